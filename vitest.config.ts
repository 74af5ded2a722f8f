import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Each test file loads the addon in its own process: a native crash kills one worker, not the run.
    pool: 'forks',
    // GPU test files must not share one GPU between processes; CPU files are light enough to run 2 at a time.
    maxWorkers: process.argv.some((a) => a.includes('test/gpu')) ? 1 : 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
