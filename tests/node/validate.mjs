// ajv's side of tests/test_schema_engines.py: `node validate.mjs SCHEMA_DIR < request.json`, where
// request.json is {"jobs": [[schema file name, document file], ...], "patterns": [...],
// "strings": [...]}. Every *.schema.json of SCHEMA_DIR is
// compiled with Ajv2020 plus ajv-formats and nothing else, once with the default options and
// once with {strict: true} (strictRequired, strictTypes and strictTuples too). Prints
// {"complaints": [...], "verdicts": [...]}: a complaint is a schema that does not compile or a
// strict-mode warning; a verdict is whether the default-mode validator accepts the document;
// "matches" maps each pattern to the indexes of the strings it matches as ajv reads it
// (`new RegExp(pattern, "u")`).
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const [dir] = process.argv.slice(2);
const files = readdirSync(dir).filter((n) => n.endsWith(".schema.json")).sort();
const schemas = files.map((name) => [name, JSON.parse(readFileSync(join(dir, name), "utf8"))]);
const complaints = [];

function compileAll(mode, options) {
  const say = (level) => (...args) => complaints.push(`${mode} ${level}: ${args.join(" ")}`);
  const ajv = new Ajv2020({ ...options, logger: { log() {}, warn: say("warning"), error: say("error") } });
  addFormats(ajv);
  for (const [, schema] of schemas) ajv.addSchema(schema);
  const validators = new Map();
  for (const [name, schema] of schemas) {
    try {
      validators.set(name, ajv.getSchema(schema.$id));
    } catch (error) {
      complaints.push(`${mode}: ${name}: ${error.message}`);
    }
  }
  return validators;
}

const validators = compileAll("default", {});
compileAll("strict: true", { strict: true });
const { jobs, patterns, strings } = JSON.parse(readFileSync(0, "utf8"));
const verdicts = jobs.map(([name, path]) => {
  const validate = validators.get(name);
  return validate ? validate(JSON.parse(readFileSync(path, "utf8"))) : null;
});
const matches = {};
for (const pattern of patterns) {
  const regexp = new RegExp(pattern, "u");
  matches[pattern] = strings.flatMap((text, index) => (regexp.test(text) ? [index] : []));
}
process.stdout.write(JSON.stringify({ complaints, verdicts, matches }) + "\n");
