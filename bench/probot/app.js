// The baseline: a Probot app that verifies the signature and runs a no-op
// handler for issues.labeled, storing nothing.
export default (app) => {
  app.on("issues.labeled", async () => {});
};
