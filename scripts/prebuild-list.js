#!/usr/bin/env node
'use strict';
// Prints the builds of native/prebuilds.json (the one list of libtorch builds hdlm ships
// prebuilds for) as the GitHub workflow's build matrix: one JSON array on one line.
//
//   node scripts/prebuild-list.js pip       the builds made from a torch wheel (the CUDA ones)
//   node scripts/prebuild-list.js debian    the builds made from Debian's libtorch (CI's CPU one)
const path = require('path');

const from = process.argv[2];
const builds = require(path.join(__dirname, '..', 'native', 'prebuilds.json')).builds;
if (!['pip', 'debian'].includes(from)) {
  console.error('usage: prebuild-list.js pip|debian');
  process.exit(1);
}
console.log(JSON.stringify(builds.filter((b) => b.from === from)));
