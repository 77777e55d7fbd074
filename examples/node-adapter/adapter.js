#!/usr/bin/env node
// @ts-check
// A second implementation of meterspec core, in JavaScript, behind the conformance harness
// protocol (conformance/INTERPRETING.md section 5). No npm dependencies: exact decimals are
// BigInt, ids use node:crypto, the JSON Schemas are read from the repository's schemas/.
//
//   meterspec conformance run --impl "node examples/node-adapter/adapter.js"
//
// Scope: `meter` in full; `aggregate` for `sum` over explicit windows and UTC tumbling windows.
// Everything else is answered `skipped` with a reason, never guessed.
'use strict';

// The contracts' types, generated from schemas/ (typescript/meterspec.d.ts): `tsc -p typescript`
// checks this file against them (tests/test_typescript.py). Comments only: node needs nothing.
/** @typedef {import('../../typescript/meterspec').MeterRecord} MeterRecord */
/** @typedef {import('../../typescript/meterspec').MeterReading} MeterReading */

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');

const IMPLEMENTATION = {
  name: 'meterspec-node-example',
  version: '0.1.0',
  language: 'javascript',
  operations: ['meter', 'aggregate'],
  // Only what this adapter implements; the runner skips cases that need anything else.
  features: ['errors', 'events', 'metering', 'event-types', 'filters', 'dimensions', 'ids', 'quantity',
    'timestamps', 'unicode', 'windows', 'sum', 'grouping', 'tenancy'],
};

const SCHEMA_DIR = process.env.METERSPEC_SCHEMAS
  || path.join(__dirname, '..', '..', 'schemas');

// ---------------------------------------------------------------------------------------------
// Problems (specs/errors.md): thrown as one exception carrying every problem found.

class Rejected extends Error {
  constructor(problems) {
    super(problems.map((p) => `${p.code} at ${p.path}`).join(', '));
    this.problems = problems;
  }
}

class Skip extends Error {}

const problem = (code, path) => ({ code, path });
const reject = (code, path) => { throw new Rejected([problem(code, path)]); };

// RFC 6901 JSON Pointer from unescaped tokens.
const pointer = (...tokens) => tokens
  .map((t) => `/${String(t).replace(/~/g, '~0').replace(/\//g, '~1')}`).join('');

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const has = (o, k) => Object.prototype.hasOwnProperty.call(o, k);

// Python compares str by code point; JavaScript's < compares UTF-16 code units, which differs
// above U+FFFF. UTF-8 byte order is code point order.
const compareText = (a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

// ---------------------------------------------------------------------------------------------
// Quantities (MS-QTY): value = coefficient * 10^exponent, coefficient a BigInt. No floats.

const QUANTITY = /^-?([0-9]+)(?:\.([0-9]+))?(?:[eE]([+-]?[0-9]+))?$/;
const ZERO = { c: 0n, e: 0 };

function parseQuantity(text, at = '') {
  if (typeof text !== 'string') reject('wrong-type', at);
  const match = QUANTITY.exec(text);
  if (match === null) reject('invalid-quantity', at);
  const [, integer, fraction = '', exponentText = '0'] = match;
  // MS-QTY-002: at most 64 characters and an exponent of at most 4 digits (leading zeros
  // count, the sign does not), checked before anything reads the exponent.
  if (text.length > 64 || exponentText.replace(/^[+-]/, '').length > 4) {
    reject('quantity-out-of-range', at);
  }
  const coefficient = (integer + fraction).replace(/^0+/, '');
  if (coefficient === '') return ZERO;
  const significant = coefficient.replace(/0+$/, '');
  const exponent = Number(exponentText) - fraction.length
    + (coefficient.length - significant.length);
  if (significant.length + exponent > 30 || -exponent > 20) {
    reject('quantity-out-of-range', at);
  }
  return { c: BigInt((text[0] === '-' ? '-' : '') + significant), e: exponent };
}

function addQuantities(a, b) {
  const e = Math.min(a.e, b.e);
  return { c: a.c * 10n ** BigInt(a.e - e) + b.c * 10n ** BigInt(b.e - e), e };
}

// MS-QTY-004: plain notation, no trailing fraction zeros, zero is "0".
function formatQuantity({ c, e }) {
  if (c === 0n) return '0';
  const sign = c < 0n ? '-' : '';
  let digits = (c < 0n ? -c : c).toString();
  if (e >= 0) return sign + digits + '0'.repeat(e);
  if (digits.length <= -e) digits = '0'.repeat(-e - digits.length + 1) + digits;
  const integer = digits.slice(0, digits.length + e);
  const fraction = digits.slice(digits.length + e).replace(/0+$/, '');
  return sign + integer + (fraction ? `.${fraction}` : '');
}

// ---------------------------------------------------------------------------------------------
// Timestamps (MS-TIME): BigInt nanoseconds since 1970-01-01T00:00:00Z, never truncated
// (MS-TIME-003). A Number would hold only about 104 days of nanoseconds exactly.

// Up to nine fraction digits, then only zeros: a non-zero digit finer than a nanosecond names
// no instant (MS-TIME-003), zeros there change nothing.
const TIMESTAMP = /^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9})0*)?([Zz]|[+-][0-9]{2}:[0-9]{2})$/;
const NANOS_PER_SECOND = 1000000000n;
const NANOS_PER_DAY = 86400n * NANOS_PER_SECOND;

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
function daysFromCivil(y, m, d) {
  const yy = m <= 2 ? y - 1 : y;
  const era = Math.floor(yy / 400);
  const yoe = yy - era * 400;
  const doy = Math.floor((153 * (m + (m > 2 ? -3 : 9)) + 2) / 5) + d - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  return era * 146097 + doe - 719468;
}

function civilFromDays(z) {
  const zz = z + 719468;
  const era = Math.floor(zz / 146097);
  const doe = zz - era * 146097;
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524)
    - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100));
  const mp = Math.floor((5 * doy + 2) / 153);
  const d = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const m = mp < 10 ? mp + 3 : mp - 9;
  return [yoe + era * 400 + (m <= 2 ? 1 : 0), m, d];
}

const isLeap = (y) => (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
const daysInMonth = (y, m) => [31, isLeap(y) ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1];
const MIN_NANOS = BigInt(daysFromCivil(1, 1, 1)) * NANOS_PER_DAY;
const MAX_NANOS = BigInt(daysFromCivil(10000, 1, 1)) * NANOS_PER_DAY - 1n;

function parseTimestamp(text, at = '') {
  if (typeof text !== 'string') reject('wrong-type', at);
  const match = text.length <= 64 ? TIMESTAMP.exec(text) : null; // MS-TIME-001: 64 characters
  if (match === null) reject('invalid-timestamp', at);
  const [y, mo, d, h, mi, s] = match.slice(1, 7).map(Number);
  const fraction = match[7];
  const offset = match[8];
  let offsetSeconds = 0;
  // Year 0000 is a real (leap) year: a date in it is out of range, not invalid (MS-TIME-001).
  let valid = mo >= 1 && mo <= 12 && d >= 1 && d <= daysInMonth(y, mo)
    && h <= 23 && mi <= 59 && s <= 59; // no leap seconds
  if (offset !== 'Z' && offset !== 'z') {
    const oh = Number(offset.slice(1, 3));
    const om = Number(offset.slice(4, 6));
    valid = valid && oh <= 23 && om <= 59;
    offsetSeconds = (oh * 3600 + om * 60) * (offset[0] === '-' ? -1 : 1);
  }
  if (!valid) reject('invalid-timestamp', at);
  if (y === 0) reject('timestamp-out-of-range', at);
  const seconds = daysFromCivil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s - offsetSeconds;
  const nanos = BigInt(seconds) * NANOS_PER_SECOND
    + (fraction ? BigInt(fraction.padEnd(9, '0')) : 0n);
  if (nanos < MIN_NANOS || nanos > MAX_NANOS) reject('timestamp-out-of-range', at);
  return nanos;
}

const pad = (n, width) => String(n).padStart(width, '0');

/** @param {bigint} a @param {bigint} b @returns {bigint} */
function floorDiv(a, b) {
  const q = a / b;
  return (a % b !== 0n && (a < 0n) !== (b < 0n)) ? q - 1n : q;
}

// MS-TIME-004: UTC, "Z", the nine nanosecond digits only when non-zero, without trailing
// zeros. Floor division: before 1970 the day and the second round toward the past.
/** @param {bigint} nanos @returns {string} */
function formatTimestamp(nanos) {
  const days = floorDiv(nanos, NANOS_PER_DAY);
  const ofDay = nanos - days * NANOS_PER_DAY; // 0 <= ofDay < one day
  const [y, m, d] = civilFromDays(Number(days));
  const nano = Number(ofDay % NANOS_PER_SECOND);
  const rest = Number(ofDay / NANOS_PER_SECOND);
  let text = `${pad(y, 4)}-${pad(m, 2)}-${pad(d, 2)}T${pad(Math.floor(rest / 3600), 2)}:`
    + `${pad(Math.floor(rest / 60) % 60, 2)}:${pad(rest % 60, 2)}`;
  if (nano) text += `.${pad(nano, 9).replace(/0+$/, '')}`;
  return `${text}Z`;
}

// ---------------------------------------------------------------------------------------------
// Identifiers (MS-ID-001): prefix + first 32 hex digits of SHA-256 over length-prefixed fields.

function digestId(prefix, fields) {
  const hash = crypto.createHash('sha256');
  for (const field of fields) {
    const bytes = Buffer.from(field, 'utf8');
    hash.update(`${bytes.length}:`);
    hash.update(bytes);
  }
  return prefix + hash.digest('hex').slice(0, 32);
}

// ---------------------------------------------------------------------------------------------
// Schema validation: the repository's JSON Schemas (draft 2020-12, the subset they use),
// reported the way specs/errors.md asks: structural keywords keep their own code (a quantity
// given as a number is wrong-type); other failures take the code the failing subschema's
// `$comment` names ("code=invalid-quantity requirement=MS-QTY-001").

const SCHEMAS = new Map();
function schema(file) {
  if (!SCHEMAS.has(file)) {
    SCHEMAS.set(file, JSON.parse(fs.readFileSync(path.join(SCHEMA_DIR, file), 'utf8')));
  }
  return SCHEMAS.get(file);
}

const KINDS = {
  event: 'event-payload.schema.json',
  config: 'metering-config.schema.json',
  record: 'meter-record.schema.json',
  request: 'aggregation-request.schema.json',
};
const KEYWORD_CODES = {
  required: 'missing-field', additionalProperties: 'unknown-field', type: 'wrong-type',
  minLength: 'empty-string', minItems: 'empty-list', maxItems: 'too-many-items',
  uniqueItems: 'duplicate-item', minimum: 'out-of-range', maximum: 'out-of-range',
  maxLength: 'out-of-range',
};
const STRUCTURAL = new Set(['type', 'required', 'additionalProperties', 'minItems', 'maxItems',
  'uniqueItems']);

function resolve(ref, file) {
  const [target, fragment = ''] = ref.split('#');
  const where = target || file;
  let node = schema(where);
  for (const token of fragment.split('/').slice(1)) {
    node = node[token.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return [node, where];
}

function isType(value, type) {
  switch (type) {
    case 'object': return isObject(value);
    case 'array': return Array.isArray(value);
    case 'string': return typeof value === 'string';
    case 'integer': return typeof value === 'number' && Number.isInteger(value);
    case 'number': return typeof value === 'number';
    case 'boolean': return typeof value === 'boolean';
    case 'null': return value === null;
    default: throw new Error(`schema type ${type} not supported`);
  }
}

const jsonKey = (v) => JSON.stringify(v, (k, x) => (isObject(x)
  ? Object.fromEntries(Object.keys(x).sort().map((n) => [n, x[n]])) : x));

// Failures of one instance against one schema node: {keyword, node, at: [tokens], instance}.
// Like Python's jsonschema, oneOf/anyOf/not fail as one error (their branches' errors are not
// reported), while $ref, allOf, if/then/else, properties and items pass inner errors up.
function failures(node, instance, at, file) {
  if (node === true) return [];
  const out = [];
  const fail = (keyword) => out.push({ keyword, node, at, instance });
  const valid = (sub) => failures(sub, instance, at, file).length === 0;
  if (node.$ref !== undefined) {
    const [target, where] = resolve(node.$ref, file);
    out.push(...failures(target, instance, at, where));
  }
  if (node.type !== undefined && !isType(instance, node.type)) fail('type');
  if (node.enum !== undefined && !node.enum.some((v) => jsonKey(v) === jsonKey(instance))) {
    fail('enum');
  }
  if (node.const !== undefined && jsonKey(node.const) !== jsonKey(instance)) fail('const');
  if (typeof instance === 'string') {
    const length = [...instance].length;
    if (node.minLength !== undefined && length < node.minLength) fail('minLength');
    if (node.maxLength !== undefined && length > node.maxLength) fail('maxLength');
    if (node.pattern !== undefined && !new RegExp(node.pattern, 'u').test(instance)) fail('pattern');
  }
  if (typeof instance === 'number') {
    if (node.minimum !== undefined && instance < node.minimum) fail('minimum');
    if (node.maximum !== undefined && instance > node.maximum) fail('maximum');
  }
  if (Array.isArray(instance)) {
    if (node.minItems !== undefined && instance.length < node.minItems) fail('minItems');
    if (node.maxItems !== undefined && instance.length > node.maxItems) fail('maxItems');
    if (node.uniqueItems && new Set(instance.map(jsonKey)).size !== instance.length) {
      fail('uniqueItems');
    }
    if (node.items !== undefined) {
      instance.forEach((item, i) => out.push(...failures(node.items, item, [...at, i], file)));
    }
  }
  if (isObject(instance)) {
    if (node.required !== undefined && node.required.some((n) => !has(instance, n))) {
      fail('required');
    }
    const known = node.properties || {};
    for (const [name, sub] of Object.entries(known)) {
      if (has(instance, name)) out.push(...failures(sub, instance[name], [...at, name], file));
    }
    const extra = Object.keys(instance).filter((n) => !has(known, n));
    if (node.additionalProperties === false && extra.length) fail('additionalProperties');
    if (isObject(node.additionalProperties)) {
      for (const name of extra) {
        out.push(...failures(node.additionalProperties, instance[name], [...at, name], file));
      }
    }
    if (node.maxProperties !== undefined && Object.keys(instance).length > node.maxProperties) {
      fail('maxProperties');
    }
  }
  for (const sub of node.allOf || []) out.push(...failures(sub, instance, at, file));
  if (node.anyOf !== undefined && !node.anyOf.some(valid)) fail('anyOf');
  if (node.oneOf !== undefined && node.oneOf.filter(valid).length !== 1) fail('oneOf');
  if (node.not !== undefined && valid(node.not)) fail('not');
  if (node.if !== undefined) {
    const branch = valid(node.if) ? node.then : node.else;
    if (branch !== undefined) out.push(...failures(branch, instance, at, file));
  }
  return out;
}

// The code= field of a subschema's `$comment`, if any.
function namedCode(node) {
  const fields = typeof node.$comment === 'string' ? node.$comment.split(' ') : [];
  const field = fields.find((f) => f.startsWith('code='));
  return field && field.slice('code='.length);
}

function schemaProblems(kind, document) {
  const found = new Map();
  const add = (code, at) => found.set(`${code}\u0000${at}`, problem(code, at));
  for (const { keyword, node, at, instance } of failures(schema(KINDS[kind]), document, [], KINDS[kind])) {
    if (keyword === 'required') {
      for (const name of node.required) if (!has(instance, name)) add('missing-field', pointer(...at, name));
    } else if (keyword === 'additionalProperties') {
      const known = node.properties || {};
      for (const name of Object.keys(instance)) if (!has(known, name)) add('unknown-field', pointer(...at, name));
    } else {
      const code = STRUCTURAL.has(keyword) ? KEYWORD_CODES[keyword]
        : namedCode(node) || KEYWORD_CODES[keyword] || 'invalid-value';
      add(code, pointer(...at));
    }
  }
  return [...found.values()];
}

// Values a pattern cannot check (Feb 30, quantity bounds) are checked wherever the document
// holds them, even when other parts of it are malformed (MS-ERR-002).
const VALUE_FIELDS = {
  event: [['time']],
  record: [['recordedAt'], ['meteredAt'], ['measurement', 'quantity']],
  config: [['measurements', '*', 'quantity']],
  request: [['windows', '*', 'start'], ['windows', '*', 'end'], ['tumbling', 'start'],
    ['tumbling', 'end']],
};

function* walk(value, fields, at) {
  if (fields.length === 0) {
    yield [at, value];
  } else if (fields[0] === '*' && Array.isArray(value)) {
    for (let i = 0; i < value.length; i += 1) yield* walk(value[i], fields.slice(1), [...at, i]);
  } else if (isObject(value) && has(value, fields[0])) {
    yield* walk(value[fields[0]], fields.slice(1), [...at, fields[0]]);
  }
}

// Try a parse; on rejection, add its problems to `problems` and return null.
function attempt(problems, parse) {
  try {
    return parse();
  } catch (e) {
    if (!(e instanceof Rejected)) throw e;
    problems.push(...e.problems);
    return null;
  }
}

// MS-ERR-002: the schema's problems, and the value problems of every quantity and timestamp
// the document holds that the schema did not already report.
function documentProblems(kind, document) {
  const structural = schemaProblems(kind, document);
  const reported = new Set(structural.map((p) => p.path));
  const values = [];
  for (const fields of VALUE_FIELDS[kind]) {
    for (const [at, value] of walk(document, fields, [])) {
      const where = pointer(...at);
      if (typeof value !== 'string' || reported.has(where)) continue;
      const check = fields[fields.length - 1] === 'quantity' ? parseQuantity : parseTimestamp;
      attempt(values, () => check(value, where));
    }
  }
  return { structural, values, all: [...structural, ...values] };
}

// Whether a document has the plain shape of its type (right members, right JSON types). Such
// documents skip the schema and get the value checks of the pipeline, which also sees their
// measurement problems; others are explained by the schema alone.
function plainShape(document, required, optional, strings) {
  if (!isObject(document)) return false;
  const names = Object.keys(document);
  return required.every((n) => has(document, n))
    && names.every((n) => required.includes(n) || optional.includes(n))
    && strings.every((n) => !has(document, n) || typeof document[n] === 'string');
}

const stringMap = (v) => isObject(v) && Object.values(v).every((x) => typeof x === 'string');
const IDENTITY = ['id', 'workspaceID', 'universeID', 'type', 'subject'];

function plainEvent(event) {
  return plainShape(event, [...IDENTITY, 'time'], ['properties'], [...IDENTITY, 'time'])
    && (!has(event, 'properties') || stringMap(event.properties));
}

const RECORD_STRINGS = ['id', 'workspaceID', 'universeID', 'subject', 'recordedAt',
  'sourceEventID', 'meteredAt'];

function plainRecord(record) {
  return plainShape(record, ['id', 'workspaceID', 'universeID', 'subject', 'recordedAt',
    'measurement', 'dimensions', 'sourceEventID'], ['meteredAt'], RECORD_STRINGS)
    && plainShape(record.measurement, ['quantity', 'unit'], [], ['quantity', 'unit'])
    && stringMap(record.dimensions);
}

// ---------------------------------------------------------------------------------------------
// Metering (MS-MET)

function compileFilter(filter) {
  const name = filter.property;
  if (has(filter, 'equals')) return (props) => has(props, name) && props[name] === filter.equals;
  if (has(filter, 'in')) return (props) => has(props, name) && filter.in.includes(props[name]);
  if (has(filter, 'notIn')) return (props) => !has(props, name) || !filter.notIn.includes(props[name]);
  if (has(filter, 'exists')) return (props) => has(props, name) === filter.exists;
  const children = (filter.allOf || filter.anyOf).map(compileFilter);
  return has(filter, 'allOf')
    ? (props) => children.every((child) => child(props))
    : (props) => children.some((child) => child(props));
}

// The config's problems: if it does not match its schema, the schema's and the values'; if it
// does, the values' and those of checks that need a well-formed config (MS-ERR-002).
function compileConfig(config) {
  const { structural, values } = documentProblems('config', config);
  if (structural.length) throw new Rejected([...structural, ...values]);
  const problems = [...values];
  const seen = new Set();
  const rules = config.measurements.map((m, i) => {
    const constant = has(m, 'quantity') ? attempt([], () => parseQuantity(m.quantity)) : null;
    if (has(m, 'quantity') && constant === null) return null; // already a value problem
    const source = constant ? `constant:${formatQuantity(constant)}` : `property:${m.sourceProperty}`;
    const identity = JSON.stringify([m.unit, source]);
    if (seen.has(identity)) problems.push(problem('duplicate-measurement', `/measurements/${i}`));
    seen.add(identity);
    return {
      unit: m.unit,
      property: constant ? null : m.sourceProperty,
      constant,
      source,
      types: m.eventTypes || null,
      matches: m.filter ? compileFilter(m.filter) : () => true,
    };
  });
  if (problems.length) throw new Rejected(problems);
  const sources = new Set(rules.filter((r) => r.property !== null).map((r) => r.property));
  return { rules, sources, dimensions: config.dimensions || null };
}

/** @returns {MeterRecord[]} */
function meter(input) {
  const meterConfig = compileConfig(has(input, 'config') ? input.config : null);
  let event;
  if (has(input, 'eventText')) {
    if (typeof input.eventText !== 'string') throw new Error('eventText is not a string');
    try {
      event = JSON.parse(input.eventText);
    } catch {
      reject('invalid-json', '');
    }
  } else {
    event = has(input, 'event') ? input.event : null;
  }
  if (!plainEvent(event)) {
    const problems = documentProblems('event', event).all;
    if (problems.length) throw new Rejected(problems);
  }
  const problems = IDENTITY.filter((n) => event[n] === '').map((n) => problem('empty-string', `/${n}`));
  const instant = attempt(problems, () => parseTimestamp(event.time, '/time'));
  const props = event.properties || {};
  const measured = [];
  for (const rule of meterConfig.rules) {
    if (rule.types !== null && !rule.types.includes(event.type)) continue;
    if (!rule.matches(props)) continue;
    if (rule.constant) {
      measured.push([rule, rule.constant]);
      continue;
    }
    const at = pointer('properties', rule.property);
    if (!has(props, rule.property)) {
      problems.push(problem('missing-source-property', at));
      continue;
    }
    const quantity = attempt(problems, () => parseQuantity(props[rule.property], at));
    if (quantity !== null) measured.push([rule, quantity]);
  }
  // MS-MET-008: one bad measurement rejects the whole event.
  if (problems.length) throw new Rejected(problems);
  const meteredAt = has(input, 'meteredAt') && input.meteredAt !== null
    ? formatTimestamp(parseTimestamp(input.meteredAt, '/meteredAt')) : null;
  const names = meterConfig.dimensions
    ? meterConfig.dimensions.filter((n) => has(props, n))
    : Object.keys(props).filter((n) => !meterConfig.sources.has(n));
  const dimensions = Object.fromEntries(names.sort(compareText).map((n) => [n, props[n]]));
  const recordedAt = formatTimestamp(instant);
  return measured.map(([rule, quantity]) => {
    /** @type {MeterRecord} */
    const record = {
      id: digestId('rec_', ['meterspec/record/v1', event.workspaceID, event.universeID,
        event.id, rule.unit, rule.source]),
      workspaceID: event.workspaceID,
      universeID: event.universeID,
      subject: event.subject,
      recordedAt,
      measurement: { quantity: formatQuantity(quantity), unit: rule.unit },
      dimensions,
      sourceEventID: event.id,
    };
    if (meteredAt !== null) record.meteredAt = meteredAt;
    return record;
  });
}

// ---------------------------------------------------------------------------------------------
// Windows (MS-WIN) and aggregation (MS-AGG), `sum` only.

const MAX_WINDOWS = 100000;
const FIXED = { minute: 60n * NANOS_PER_SECOND, hour: 3600n * NANOS_PER_SECOND, day: NANOS_PER_DAY };

// Index of the UTC calendar period containing `nanos` (floor division, also before 1970,
// MS-TIME-003), and the start of period `index`.
function periodOf(size, nanos) {
  if (size !== 'month') return floorDiv(nanos, FIXED[size]);
  const [y, m] = civilFromDays(Number(floorDiv(nanos, NANOS_PER_DAY)));
  return BigInt(y * 12 + m - 1);
}

function periodStart(size, index) {
  if (size !== 'month') return index * FIXED[size];
  const months = Number(index);
  return BigInt(daysFromCivil(Math.floor(months / 12), (months % 12) + 1, 1)) * NANOS_PER_DAY;
}

// `problems`: the request's value problems so far (MS-ERR-002: reported with these checks).
function tumblingWindows(tumbling, problems) {
  if ((has(tumbling, 'timeZone') ? tumbling.timeZone : 'UTC') !== 'UTC') {
    throw new Skip('tumbling windows in time zones other than UTC are not implemented');
  }
  if (problems.length) throw new Rejected(problems);
  const start = parseTimestamp(tumbling.start, '/tumbling/start');
  const end = parseTimestamp(tumbling.end, '/tumbling/end');
  if (start >= end) reject('invalid-window', '/tumbling');
  const first = periodOf(tumbling.size, start);
  let last = periodOf(tumbling.size, end);
  if (periodStart(tumbling.size, last) < end) last += 1n;
  if (last - first > BigInt(MAX_WINDOWS + 2)) reject('too-many-items', '/tumbling');
  const unaligned = [['start', start], ['end', end]]
    .filter(([, t]) => periodStart(tumbling.size, periodOf(tumbling.size, t)) !== t)
    .map(([name]) => problem('unaligned-window', `/tumbling/${name}`));
  if (unaligned.length) throw new Rejected(unaligned);
  const windows = [];
  for (let i = first; i < periodOf(tumbling.size, end); i += 1n) {
    windows.push([periodStart(tumbling.size, i), periodStart(tumbling.size, i + 1n)]);
    if (windows.length > MAX_WINDOWS) reject('too-many-items', '/tumbling');
  }
  return windows;
}

function explicitWindows(list, problems) {
  const windows = list.map((w, i) => {
    const span = [attempt([], () => parseTimestamp(w.start)), attempt([], () => parseTimestamp(w.end))];
    if (span[0] !== null && span[1] !== null && span[0] >= span[1]) {
      problems.push(problem('invalid-window', `/windows/${i}`));
    }
    return span;
  });
  if (problems.length) throw new Rejected(problems);
  if (new Set(windows.map(String)).size !== windows.length) reject('duplicate-item', '/windows');
  return windows.sort((a, b) => (a[0] === b[0] ? Number(a[1] - b[1]) : (a[0] < b[0] ? -1 : 1)));
}

function parseRecord(record, prefix) {
  if (!plainRecord(record)) {
    const problems = documentProblems('record', record).all;
    if (problems.length) {
      throw new Rejected(problems.map((p) => problem(p.code, prefix + p.path)));
    }
  }
  const problems = ['id', 'workspaceID', 'universeID', 'subject', 'sourceEventID']
    .filter((n) => record[n] === '').map((n) => problem('empty-string', `${prefix}/${n}`));
  if (record.measurement.unit === '') problems.push(problem('empty-string', `${prefix}/measurement/unit`));
  const quantity = attempt(problems,
    () => parseQuantity(record.measurement.quantity, `${prefix}/measurement/quantity`));
  const instant = attempt(problems, () => parseTimestamp(record.recordedAt, `${prefix}/recordedAt`));
  if (has(record, 'meteredAt')) {
    attempt(problems, () => parseTimestamp(record.meteredAt, `${prefix}/meteredAt`));
  }
  if (problems.length) throw new Rejected(problems);
  return { record, quantity, instant };
}

/** @returns {MeterReading[]} */
function aggregate(input) {
  const request = has(input, 'request') ? input.request : null;
  // As for a config: checks that need a well-formed request run only if it matches its schema.
  const { structural, values } = documentProblems('request', request);
  if (structural.length) throw new Rejected([...structural, ...values]);
  const windows = has(request, 'tumbling') ? tumblingWindows(request.tumbling, values)
    : explicitWindows(request.windows, values);
  if (!Array.isArray(input.records)) throw new Error('records is not a JSON array');
  const parsed = [];
  const problems = [];
  input.records.forEach((record, i) => {
    const one = attempt(problems, () => parseRecord(record, `/records/${i}`));
    if (one !== null) parsed.push(one);
  });
  if (problems.length) throw new Rejected(problems);
  if (request.aggregation !== 'sum') {
    throw new Skip(`aggregation ${JSON.stringify(request.aggregation)} is not implemented (sum only)`);
  }
  const groupBy = request.groupBy || [];
  const groups = new Map();
  for (const { record, quantity, instant } of parsed) {
    const values = groupBy.map((n) => (has(record.dimensions, n) ? record.dimensions[n] : null));
    const key = JSON.stringify([record.workspaceID, record.universeID, record.subject,
      record.measurement.unit, values]);
    windows.forEach(([start, end], i) => {
      if (instant < start || instant >= end) return;
      if (!groups.has(key)) groups.set(key, windows.map(() => ({ total: ZERO, count: 0 })));
      const state = groups.get(key)[i];
      state.total = addQuantities(state.total, quantity);
      state.count += 1;
    });
  }
  const sortKey = (key) => {
    const [ws, uni, subject, unit, values] = JSON.parse(key);
    return [ws, uni, subject, unit, ...values.map((v) => (v === null ? [0, ''] : [1, v]))];
  };
  const compareKeys = (a, b) => {
    const x = sortKey(a);
    const y = sortKey(b);
    for (let i = 0; i < x.length; i += 1) {
      const order = Array.isArray(x[i]) ? (x[i][0] - y[i][0]) || compareText(x[i][1], y[i][1])
        : compareText(x[i], y[i]);
      if (order) return order;
    }
    return 0;
  };
  const readings = [];
  for (const key of [...groups.keys()].sort(compareKeys)) {
    const [workspaceID, universeID, subject, unit, values] = JSON.parse(key);
    const groupFields = [String(groupBy.length)];
    groupBy.forEach((name, i) => groupFields.push(name, values[i] === null ? '!' : `=${values[i]}`));
    groups.get(key).forEach(({ total, count }, i) => {
      const window = { start: formatTimestamp(windows[i][0]), end: formatTimestamp(windows[i][1]) };
      /** @type {MeterReading} */
      const reading = {
        id: digestId('rdg_', ['meterspec/reading/v1', workspaceID, universeID, subject, unit,
          'sum', '', window.start, window.end, ...groupFields]),
        workspaceID,
        universeID,
        subject,
        measurement: { quantity: formatQuantity(total), unit },
        aggregation: 'sum',
        window,
        recordCount: count,
      };
      if (request.groupBy !== undefined) {
        reading.group = Object.fromEntries(groupBy.map((n, j) => [n, values[j]]));
      }
      readings.push(reading);
    });
  }
  return readings;
}

// ---------------------------------------------------------------------------------------------
// The protocol: one JSON object per line in, one per line out.

function answer(testCase) {
  const operations = { meter, aggregate };
  if (!has(operations, testCase.operation)) {
    return { skipped: `operation ${JSON.stringify(testCase.operation)} is not implemented` };
  }
  try {
    return { output: operations[testCase.operation](testCase.input) };
  } catch (e) {
    if (e instanceof Rejected) return { error: e.problems };
    if (e instanceof Skip) return { skipped: e.message };
    return { errored: String(e && e.stack ? e.stack : e) };
  }
}

function send(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
lines.on('line', (line) => {
  if (!line.trim()) return;
  let request;
  try {
    request = JSON.parse(line);
  } catch (e) {
    process.stderr.write(`node adapter: not JSON: ${e.message}\n`);
    return;
  }
  if (request.cmd === 'start') {
    send({ ready: true, implementation: IMPLEMENTATION });
  } else if (request.cmd === 'run') {
    send({ seq: request.seq, ...answer(request.case) });
  } else if (request.cmd === 'stop') {
    lines.close();
  } else {
    process.stderr.write(`node adapter: unknown cmd ${JSON.stringify(request.cmd)}\n`);
  }
});
lines.on('close', () => process.exit(0));
