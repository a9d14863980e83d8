// One linter for the whole tree. The import-x rules keep the layering that
// ARCHITECTURE.md draws: arrows point down, leaves do not import each other, no cycles.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import importX from 'eslint-plugin-import-x';
import { createTypeScriptImportResolver } from 'eslint-import-resolver-typescript';

const leaves = ['runtime', 'images', 'network', 'storage', 'logs', 'cgroups', 'store'];
const src = (d) => `./src/${d}`;

// For each folder, the folders it must not import from.
const zones = [
  { target: src('util'), from: ['./src/!(util)/**'] },
  { target: src('types'), from: ['./src/!(types)/**'] },
  ...leaves.map((leaf) => ({
    target: src(leaf),
    from: [
      ...leaves.filter((l) => l !== leaf).map(src),
      ...['engine', 'api', 'cli', 'client', 'daemon'].map(src),
    ],
  })),
  { target: src('engine'), from: ['api', 'cli', 'client', 'daemon'].map(src) },
  { target: src('api'), from: ['cli', 'client', 'daemon', ...leaves].map(src) },
  { target: src('client'), from: ['cli', 'daemon', 'engine', ...leaves].map(src) },
  { target: src('cli'), from: ['daemon', 'engine', 'api', ...leaves].map(src) },
];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'bench/results/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    plugins: { 'import-x': importX },
    settings: {
      'import-x/resolver-next': [createTypeScriptImportResolver({ project: './tsconfig.json' })],
    },
    rules: {
      'import-x/no-restricted-paths': ['error', { zones }],
      'import-x/no-cycle': ['error', { ignoreExternal: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
    },
  },
  {
    files: ['eslint.config.js'],
    languageOptions: { globals: { console: 'readonly' } },
  },
);
