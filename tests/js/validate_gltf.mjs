// Run the Khronos glTF validator (npm `gltf-validator`, pinned in package.json) on one file and
// print its JSON report on stdout. Usage: node tests/js/validate_gltf.mjs FILE.glb|FILE.gltf
// Exit status: 0 when the report was printed (whatever it says), 2 on a usage or read error.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as validator from 'gltf-validator';

const file = process.argv[2];
if (!file) {
  console.error('usage: node validate_gltf.mjs FILE.glb');
  process.exit(2);
}
let bytes;
try {
  bytes = new Uint8Array(await readFile(file));
} catch (err) {
  console.error(`${file}: cannot read (${err.message})`);
  process.exit(2);
}
const dir = path.dirname(path.resolve(file));
const report = await validator.validateBytes(bytes, {
  uri: path.basename(file),
  maxIssues: 1000,
  // External buffers/images (a .gltf beside its .bin) are read from the file's folder.
  externalResourceFunction: (uri) =>
    readFile(path.join(dir, decodeURIComponent(uri))).then((b) => new Uint8Array(b)),
});
process.stdout.write(JSON.stringify(report, null, 1) + '\n');
