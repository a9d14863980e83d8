// Docker-style generated names (adjective_scientist), so `ps` stays readable.
import { randomInt } from 'node:crypto';

const LEFT = [
  'admiring',
  'bold',
  'brave',
  'calm',
  'clever',
  'eager',
  'elated',
  'focused',
  'gallant',
  'happy',
  'jolly',
  'keen',
  'lucid',
  'modest',
  'nifty',
  'quirky',
  'serene',
  'sharp',
  'stoic',
  'tender',
  'vibrant',
  'wizardly',
  'zealous',
  'upbeat',
];
const RIGHT = [
  'albattani',
  'babbage',
  'curie',
  'darwin',
  'dijkstra',
  'euclid',
  'fermat',
  'galileo',
  'hopper',
  'hypatia',
  'kepler',
  'knuth',
  'lamport',
  'liskov',
  'lovelace',
  'mccarthy',
  'noether',
  'pascal',
  'ritchie',
  'shannon',
  'thompson',
  'torvalds',
  'turing',
  'wozniak',
];

export function generateName(taken: (name: string) => boolean): string {
  for (let i = 0; ; i++) {
    const base = `${LEFT[randomInt(LEFT.length)]}_${RIGHT[randomInt(RIGHT.length)]}`;
    const name = i < 10 ? base : `${base}${randomInt(1000)}`;
    if (!taken(name)) return name;
  }
}
