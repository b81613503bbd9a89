// The GraphQL over HTTP conformance audit (graphql-http's serverAudits) against a
// running ctxgraph: `tsx src/audit-http.ts http://127.0.0.1:8000/graphql [api-key]`.
// Prints one line per audit and exits non-zero on any error or warning.
import { auditServer } from "graphql-http";

const [url, key] = process.argv.slice(2);
if (!url) {
  console.error("usage: tsx src/audit-http.ts <graphql url> [api key]");
  process.exit(2);
}

// Every request of the audit carries the key when one is given (the audit itself
// knows nothing of authentication).
const fetchFn: typeof fetch = (input, init) => {
  const headers = new Headers(init?.headers);
  if (key) headers.set("authorization", `Bearer ${key}`);
  return fetch(input, { ...init, headers });
};

const results = await auditServer({ url, fetchFn });
let problems = 0;
for (const result of results) {
  const detail = result.status === "ok" ? "" : ` - ${result.reason}`;
  console.log(`${result.status.padEnd(5)} ${result.id} ${result.name}${detail}`);
  if (result.status !== "ok") problems += 1;
}
const ok = results.filter((r) => r.status === "ok").length;
const warnings = results.filter((r) => r.status === "warn").length;
const errors = results.filter((r) => r.status === "error").length;
console.log(`graphql-http audit: ${ok} ok, ${warnings} warnings, ${errors} errors`);
process.exit(problems === 0 ? 0 : 1);
