// Adds the benchmark's jobs to the BullMQ queue the way the original's API did (attempts 3,
// exponential backoff from 5 s, completed jobs kept 7 days / 1000), and waits for every one.
// Input (stdin, one JSON line): {"jobs": [{filePath, manifestURI, registryAddress}, ...]}.
// Output (stdout, one JSON line): {"wall": seconds from the first add to the last completion,
// "statuses": {result status: count}, "failed": count, "cpu": this process's CPU seconds}.
// Environment: REDIS_URL, QUEUE_NAME.
import { Queue, QueueEvents } from "bullmq";

const env = process.env;
const connection = { url: env.REDIS_URL, maxRetriesPerRequest: null };
const input = JSON.parse(await new Promise((resolve) => {
  let text = "";
  process.stdin.on("data", (chunk) => { text += chunk; }).on("end", () => resolve(text));
}));

const queue = new Queue(env.QUEUE_NAME, { connection });
const events = new QueueEvents(env.QUEUE_NAME, { connection });
await events.waitUntilReady();

const statuses = {};
let failed = 0;
let pending = input.jobs.length;
const done = new Promise((resolve) => {
  const settle = () => { if (--pending === 0) resolve(); };
  events.on("completed", ({ returnvalue }) => {
    const status = (typeof returnvalue === "string" ? JSON.parse(returnvalue) : returnvalue).status;
    statuses[status] = (statuses[status] || 0) + 1;
    settle();
  });
  events.on("failed", ({ attemptsMade, failedReason }) => {
    if (attemptsMade >= 3) { failed += 1; statuses[`failed: ${failedReason}`] = (statuses[`failed: ${failedReason}`] || 0) + 1; settle(); }
  });
});

const options = { attempts: 3, backoff: { type: "exponential", delay: 5000 },
                  removeOnComplete: { age: 3600 * 24 * 7, count: 1000 } };
const started = process.hrtime.bigint();
await queue.addBulk(input.jobs.map((data) => ({ name: "verify", data, opts: options })));
await done;
const wall = Number(process.hrtime.bigint() - started) / 1e9;
const { user, system } = process.cpuUsage();
console.log(JSON.stringify({ wall, statuses, failed, cpu: (user + system) / 1e6 }));
await events.close();
await queue.close();
