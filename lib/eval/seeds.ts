/**
 * Seeds of the evaluation runs: one user seed, independent seeds per chunk / per sampler batch.
 */
import { randomBytes } from 'crypto';

const MASK64 = (1n << 64n) - 1n;

/** splitmix64 of (seed, index): independent per-chunk / per-batch seeds from one user seed. */
export function deriveSeed(seed: bigint, index: number): bigint {
  let z = (seed + 0x9e3779b97f4a7c15n * BigInt(index + 1)) & MASK64;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return (z ^ (z >> 31n)) & MASK64;
}

export function randomSeed(): bigint {
  return randomBytes(8).readBigUInt64LE(0);
}

