// Validates CloudNativePG objects (postgresql.cnpg.io/v1), for deploy/scripts/kubernetes.sh:
// `node validate-cnpg.mjs objects.json`, where validate.py wrote the objects. The schema is
// the one the operator publishes in its CRDs (cnpg-1.29.0.yaml), compiled into validators
// by @kubernetes-models/cloudnative-pg (pinned in package-lock.json beside this file). It
// checks types, formats, enums, bounds and required fields; like the API server's pruning,
// it does not refuse unknown fields, so tests/tests/api/deploy asserts the fields the
// deployment relies on by name.
import { readFileSync } from "node:fs";
import * as models from "@kubernetes-models/cloudnative-pg/postgresql.cnpg.io/v1";

const objects = JSON.parse(readFileSync(process.argv[2], "utf8"));
let failed = 0;
for (const { source, object } of objects) {
  const Model = object.apiVersion === "postgresql.cnpg.io/v1" ? models[object.kind] : undefined;
  if (!Model) {
    console.error(`INVALID ${source}: no schema for ${object.apiVersion} ${object.kind}`);
    failed++;
    continue;
  }
  try {
    new Model(object).validate();
  } catch (error) {
    console.error(`INVALID ${source}: ${error.message}`);
    failed++;
  }
}
console.log(`${objects.length} CloudNativePG objects checked against the operator's CRD schema`);
process.exit(failed ? 1 : 0);
