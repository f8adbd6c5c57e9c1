// Runs graphql-http's server audits against SERVER_URL and prints one JSON line of results.
// Every request carries the bearer token in AUTHORIZATION: the endpoint refuses anonymous
// callers, and the audits are about the HTTP protocol, not about authentication.
import { serverAudits } from "graphql-http";

const url = process.env.SERVER_URL;
const authorization = process.env.AUTHORIZATION;
if (!url || !authorization) {
  console.error("SERVER_URL and AUTHORIZATION are required");
  process.exit(2);
}

function fetchWithToken(input, init = {}) {
  const headers = new Headers(init.headers);
  headers.set("authorization", authorization);
  return fetch(input, { ...init, headers });
}

const results = [];
for (const audit of serverAudits({ url, fetchFn: fetchWithToken })) {
  const result = await audit.fn();
  results.push({
    id: result.id,
    name: result.name,
    status: result.status,
    reason: result.status === "ok" ? null : String(result.reason),
  });
}
console.log(JSON.stringify(results));
