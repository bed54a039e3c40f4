// ESLint for the TypeScript library (lib/) and the JavaScript around it (tests, benchmarks,
// scripts, examples). `npm run lint:ts`; `npm test` runs the lint first.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default defineConfig(
  { ignores: ['dist/', 'build/', 'prebuilds/', 'dist-prebuilds/', 'node_modules/', 'test/.tmp/', '.device/'] },
  js.configs.recommended,
  {
    files: ['lib/**/*.ts'],
    extends: [tseslint.configs.recommended],
    languageOptions: { globals: globals.node },
    rules: {
      // `const { a, ...rest } = o` drops `a` on purpose
      '@typescript-eslint/no-unused-vars': ['error', { ignoreRestSiblings: true }],
    },
  },
  {
    files: ['**/*.js'],
    languageOptions: { sourceType: 'commonjs', globals: globals.node },
    rules: {
      'no-unused-vars': ['error', { ignoreRestSiblings: true }],
    },
  },
  {
    files: ['test/**/*.js'],
    languageOptions: { globals: { ...globals.node, ...globals.mocha } },
  },
  {
    // the page of `hdlm serve` runs in the browser; puppeteer callbacks in its test too
    files: ['lib/server/page/**/*.js'],
    languageOptions: { sourceType: 'script', globals: globals.browser },
    rules: { 'no-unused-vars': ['error', { caughtErrors: 'none' }] },
  },
  {
    files: ['test/95-server-page.test.js'],
    languageOptions: { globals: { ...globals.node, ...globals.mocha, document: 'readonly' } },
  },
  {
    files: ['**/*.mjs'],
    languageOptions: { sourceType: 'module', globals: globals.node },
  },
);
