#!/usr/bin/env node
// Type-checks the Knative objects of rendered manifests with the schemas bundled in @kubernetes-models/knative.
//   node validate-knative.js FILE...   (multi-document YAML; "-" reads stdin)
// Prints one JSON line per document: {"file","kind","apiVersion","name","status":"valid"|"invalid"|"skipped","errors"}.
// Exit code 1 when any Knative document is invalid or is of a Knative kind the package does not know.
// Core kinds (no ".knative.dev" in the group) are "skipped": kubernetes-validate checks those.
"use strict";
const fs = require("fs");
const yaml = require("js-yaml");

function modelClass(apiVersion, kind) {
  const [group, version] = apiVersion.split("/");
  let mod;
  try {
    mod = require(`@kubernetes-models/knative/${group}/${version}`);
  } catch (e) {
    return null;
  }
  return mod[kind] || null;
}

let failed = false;
const files = process.argv.slice(2);
if (files.length === 0) {
  console.error("usage: validate-knative.js FILE...");
  process.exit(2);
}
for (const file of files) {
  const text = fs.readFileSync(file === "-" ? 0 : file, "utf8");
  for (const doc of yaml.loadAll(text)) {
    if (!doc) continue;
    const apiVersion = String(doc.apiVersion || "");
    const out = { file, kind: doc.kind, apiVersion, name: doc.metadata && doc.metadata.name };
    if (!apiVersion.includes(".knative.dev/")) {
      out.status = "skipped";
    } else {
      const Cls = modelClass(apiVersion, doc.kind);
      if (!Cls) {
        out.status = "invalid";
        out.errors = [`no schema for ${doc.kind} ${apiVersion} in @kubernetes-models/knative`];
      } else {
        try {
          new Cls(doc).validate();
          out.status = "valid";
        } catch (e) {
          out.status = "invalid";
          out.errors = e.errors ? e.errors.map((x) => `${x.instancePath || "/"} ${x.message}`) : [String(e.message || e)];
        }
      }
      if (out.status === "invalid") failed = true;
    }
    console.log(JSON.stringify(out));
  }
}
process.exit(failed ? 1 : 0);
