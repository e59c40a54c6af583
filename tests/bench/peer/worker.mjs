// The original service's worker, as its document describes it (BullMQ on Redis, concurrency N),
// doing the same verification steps as this project's worker: hash the file, fetch the manifest
// from the IPFS gateway, recover the signer with ethers' verifyMessage, read `entries` on the
// registry, compare, and write one row per job to Postgres.
//
// What it does not do: progress updates (the original also wrote progress to its job row),
// retries of its own beyond BullMQ's, URL guards or size caps on the manifest, block pinning or
// proofs. One JSON-RPC provider serves every job of the process. All of that makes its work per job
// lighter than this project's worker, never heavier.
//
// Environment: REDIS_URL, DATABASE_URL, RPC_URL, IPFS_GATEWAY, QUEUE_NAME, CONCURRENCY.
// Prints "ready" once connected, then runs until SIGTERM.
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { Worker } from "bullmq";
import { Contract, JsonRpcProvider, getBytes, verifyMessage } from "ethers";
import pg from "pg";

const REGISTRY_ABI = [
  "function entries(bytes32) view returns (address creator, bytes32 contentHash, string manifestURI, uint64 timestamp)",
];
const env = process.env;
const connection = { url: env.REDIS_URL, maxRetriesPerRequest: null };
const provider = new JsonRpcProvider(env.RPC_URL, undefined, { staticNetwork: true });
const database = new pg.Pool({ connectionString: env.DATABASE_URL, max: Number(env.CONCURRENCY) });

await database.query(`CREATE TABLE IF NOT EXISTS peer_verifications (
  job_id text PRIMARY KEY, file_hash text NOT NULL, status text NOT NULL, recovered text,
  creator text, result jsonb NOT NULL, completed_at timestamptz NOT NULL DEFAULT now())`);

function sha256File(path) {
  return new Promise((resolve, reject) => {
    const hash = createHash("sha256");
    createReadStream(path).on("data", (chunk) => hash.update(chunk)).on("error", reject)
      .on("end", () => resolve("0x" + hash.digest("hex")));
  });
}

async function fetchManifest(uri) {
  const url = uri.startsWith("ipfs://") ? `${env.IPFS_GATEWAY}/ipfs/${uri.slice(7)}` : uri;
  const response = await fetch(url);
  if (!response.ok) throw new Error(`manifest fetch failed: ${response.status}`);
  return response.json();
}

async function verify(job) {
  const { filePath, manifestURI, registryAddress } = job.data;
  const fileHash = await sha256File(filePath);
  const manifest = await fetchManifest(manifestURI);
  const recovered = verifyMessage(getBytes(manifest.content_hash), manifest.signature);
  const entry = await new Contract(registryAddress, REGISTRY_ABI, provider).entries(fileHash);
  const checks = {
    manifestHashOk: manifest.content_hash.toLowerCase() === fileHash.toLowerCase(),
    creatorOk: entry.creator.toLowerCase() === recovered.toLowerCase(),
    manifestOk: entry.manifestURI === manifestURI,
  };
  const ok = checks.manifestHashOk && checks.creatorOk && checks.manifestOk;
  const result = {
    status: ok ? "OK" : "FAIL", fileHash, recovered,
    onchain: { creator: entry.creator, manifestURI: entry.manifestURI, timestamp: Number(entry.timestamp) },
    checks,
  };
  await database.query(
    "INSERT INTO peer_verifications (job_id, file_hash, status, recovered, creator, result) VALUES ($1, $2, $3, $4, $5, $6)",
    [job.id, fileHash, result.status, recovered, entry.creator, result],
  );
  return result;
}

const worker = new Worker(env.QUEUE_NAME, verify, { connection, concurrency: Number(env.CONCURRENCY) });
await worker.waitUntilReady();
console.log("ready");

process.on("SIGTERM", async () => {
  await worker.close();
  await database.end();
  process.exit(0);
});
