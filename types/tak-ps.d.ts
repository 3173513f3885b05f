// The @tak-ps packages ship TypeScript sources as their types, which do not type-check under our
// strict NodeNext settings (their ajv import). tsconfig `paths` points here instead: the small
// surface our tests and benches use, typed loosely on purpose (it is someone else's library).
declare module '@tak-ps/node-cot' {
  export default class CoT {
    constructor(xml: string | Buffer | Record<string, unknown>);
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    raw: any;
    to_xml(): string;
    to_proto(version?: number): Uint8Array;
    is_stale?(): boolean;
    static from_proto(raw: Uint8Array, version?: number): CoT;
    static ping(): CoT;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    [k: string]: any;
  }
}

declare module '@tak-ps/node-tak' {
  import { EventEmitter } from 'node:events';
  import CoT from '@tak-ps/node-cot';
  export { CoT };
  export default class TAK extends EventEmitter {
    open: boolean;
    destroyed: boolean;
    version?: string;
    static connect(id: string, url: URL, auth: { cert: string; key: string }): Promise<TAK>;
    write(cots: CoT[]): void;
    write_xml(body: string): void;
    ping(): Promise<void>;
    destroy(): void;
  }
}
