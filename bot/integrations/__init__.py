"""HTTP clients for the outside services, one I/O seam each."""
