// A receive-only Probot app, as most GitHub bots start: Probot verifies the
// X-Hub-Signature-256, parses the JSON, builds the event context and runs this
// handler, then answers. Nothing is stored or queued (Probot keeps nothing).
export default (app) => {
  app.on("pull_request.opened", async (context) => {
    context.payload.pull_request.number;
  });
};
