#!/usr/bin/env node
// Compiles the registry contracts with the pinned solcjs and writes build/<Name>.json
// ({"abi", "bytecode", ...}, sorted keys, two-space indent, trailing newline) so that the
// artefacts are byte-for-byte reproducible.
//
//   node build.mjs           write build/*.json
//   node build.mjs --check   rebuild in memory; exit 1 naming every artefact that differs
import { readFileSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import solc from "solc";

const HERE = dirname(fileURLToPath(import.meta.url));
const BUILD_DIR = join(HERE, "build");
const CONTRACTS = ["ContentRegistry", "ContentRegistryCompact"];

// paris: no PUSH0 (shanghai) and no transient storage/MCOPY (cancun), so the bytecode runs on
// every EVM chain the service may meet, older dev nodes included.
const EVM_VERSION = "paris";
const OPTIMIZER = { enabled: true, runs: 200 };
const EXPECTED_SOLC = JSON.parse(readFileSync(join(HERE, "package.json"), "utf8")).devDependencies.solc;

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((key) => [key, sortKeys(value[key])]),
    );
  }
  return value;
}

function compile(name) {
  const file = `${name}.sol`;
  const input = {
    language: "Solidity",
    sources: { [file]: { content: readFileSync(join(HERE, file), "utf8") } },
    settings: {
      optimizer: OPTIMIZER,
      evmVersion: EVM_VERSION,
      outputSelection: { [file]: { [name]: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const problems = output.errors ?? [];
  for (const problem of problems) {
    process.stderr.write(problem.formattedMessage ?? `${problem.severity}: ${problem.message}\n`);
  }
  if (problems.some((problem) => problem.severity === "error")) {
    throw new Error(`${file} did not compile`);
  }
  const contract = output.contracts[file][name];
  const artefact = {
    abi: contract.abi,
    bytecode: `0x${contract.evm.bytecode.object}`,
    deployedBytecode: `0x${contract.evm.deployedBytecode.object}`,
    contractName: name,
    sourceName: file,
    compiler: { name: "solcjs", version: solc.version(), evmVersion: EVM_VERSION, optimizer: OPTIMIZER },
  };
  return `${JSON.stringify(sortKeys(artefact), null, 2)}\n`;
}

function main() {
  const check = process.argv.includes("--check");
  const version = solc.version();
  if (!version.startsWith(`${EXPECTED_SOLC}+`)) {
    throw new Error(`solc ${version} is installed, package.json pins ${EXPECTED_SOLC}: run npm ci`);
  }
  const differing = [];
  for (const name of CONTRACTS) {
    const text = compile(name);
    const target = join(BUILD_DIR, `${name}.json`);
    const relative = `build/${name}.json`;
    if (check) {
      const current = existsSync(target) ? readFileSync(target, "utf8") : null;
      if (current !== text) {
        differing.push(relative);
        console.error(`${relative}: ${current === null ? "missing" : "differs from a fresh build"}`);
      }
    } else {
      mkdirSync(BUILD_DIR, { recursive: true });
      writeFileSync(target, text);
      console.log(`wrote ${relative}`);
    }
  }
  if (check) {
    if (differing.length > 0) {
      console.error("the committed artefacts are stale: run `node build.mjs` (or `make contracts`)");
      process.exit(1);
    }
    console.log(`build/ is up to date (solc ${version}, evmVersion ${EVM_VERSION})`);
  }
}

main();
