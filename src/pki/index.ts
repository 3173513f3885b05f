export { pkiPaths, type PkiPaths } from './paths.ts';
export { initPki, issueClient, loadCa, defaultHosts, randomPassword, type InitOptions, type ClientOptions, type ClientResult } from './ca.ts';
export { assertKeyPrivate, assertNotOthersWritable, certificateExpiry } from './files.ts';
export { registerCertsCommands } from './commands.ts';
