// Lint: ESLint's and typescript-eslint's recommended rules (syntax only, no type information, so it runs in
// seconds), over the TypeScript sources, the tests and the scripts. Formatting is not enforced.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'docs/api/', 'node_modules/', 'prebuilds/', 'runs/', 'bench/results/'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  { languageOptions: { globals: globals.node } },
  // The CommonJS helpers of the install and the gyp build are plain Node scripts.
  { files: ['**/*.cjs'], languageOptions: { sourceType: 'commonjs' }, rules: { '@typescript-eslint/no-require-imports': 'off', 'no-redeclare': ['error', { builtinGlobals: false }] } },
  {
    rules: {
      // `_name` marks an argument kept for a signature (e.g. a DeviceBackend method that ignores one).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
);
