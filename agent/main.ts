#!/usr/bin/env node
// Entry point of the bundle (dist/agent.mjs).
import { main } from './cli/cli.js';

process.exitCode = await main(process.argv.slice(2));
