// Placeholder until the worker loop is wired (issue 3).
console.error("worker: not wired yet");
process.exit(1);
