#!/usr/bin/env node
'use strict';
// Prints one list of native/sources.json, the build definition both builds share, for
// binding.gyp's <!@(...) expansions (one item per line; gyp splits on whitespace, so items hold
// none). CMakeLists.txt reads the same file itself, with string(JSON).
//
//   node scripts/build-config.js sources|embedded|include_dirs|defines|cflags|ldflags|cxx_standard
const path = require('path');

const config = require(path.join(__dirname, '..', 'native', 'sources.json'));
const key = process.argv[2];
if (!Object.prototype.hasOwnProperty.call(config, key) || key === 'about') {
  console.error(`build-config.js: unknown list '${key}' (${Object.keys(config).filter((k) => k !== 'about').join(', ')})`);
  process.exit(1);
}
const value = config[key];
const items = Array.isArray(value) ? value : [value];
const bad = items.find((item) => typeof item !== 'string' || /\s/.test(item) || item === '');
if (bad !== undefined) {
  console.error(`build-config.js: ${key} holds ${JSON.stringify(bad)}; items must be non-empty strings without whitespace`);
  process.exit(1);
}
console.log(items.join('\n'));
