// The bus carries every routed event to every node (this one included). It knows nothing of TLS
// or sessions: an Envelope is plain data, and a node resolves its recipients on arrival.

export const EnvelopeKind = {
  /** an ordinary event */
  event: 0,
  /** an event that is also its sender's latest SA: receivers update their SA cache */
  sa: 1,
  /** a client disconnected: frame is the t-x-d-d notice; receivers drop its SA */
  gone: 2,
  /** a node's answer to another node's sync request: the latest SA of one of its clients, for
   *  the receivers' SA caches; clients receive it only if it differs from the SA their node had
   *  cached (it never reached them: see Router.onEnvelope) */
  replay: 3,
} as const;
export type EnvelopeKind = (typeof EnvelopeKind)[keyof typeof EnvelopeKind];

export interface Envelope {
  kind: EnvelopeKind;
  /** origin node id */
  node: string;
  /** origin session id on that node (0: the server itself); never delivered back to it */
  session: number;
  /** per-node monotonic sequence (dedupe, gap counting) */
  seq: number;
  /** uid of the origin client (SA owner for kind sa/gone), '' when unknown */
  uid: string;
  /** CoT type (the SA type for kind sa; the last SA type for gone) */
  type: string;
  /** stale time, epoch ms (NaN: none) */
  staleMs: number;
  /** directed delivery: <marti><dest callsign=…/uid=…>; both null means broadcast */
  callsigns: string[] | null;
  uids: string[] | null;
  /** the event as recipients receive it (XML, <marti> removed) */
  frame: Buffer;
  /** receive time on the origin node (performance.now(); only meaningful on that node); NaN for
   *  what the server made itself (a disconnect notice), which is no delivery latency */
  t0: number;
  /** kinds sa and replay: the certificate serial of the client that owns `uid` (absent: unknown,
   *  e.g. a plaintext client). A client of another node under another certificate may not speak
   *  for that uid, as on one node (uid_conflict). */
  owner?: string;
  /** local only, never on the bus: the TAK protobuf encoding of `frame`, made on the first protobuf
   *  recipient (an empty Buffer: it cannot go out as protobuf) — see src/wire.ts */
  proto?: Buffer;
}

export type DeliverFn = (env: Envelope) => void;

/** What a multi-node bus needs from the router beyond delivery (the in-process bus ignores it). */
export interface BusHost {
  /** the latest SAs of this node's own clients, as envelopes of kind `replay` (a node joined),
   *  made as they are read: the bus reads them over as many publishes as the answer takes */
  localState(): Iterator<Envelope>;
  /** a node stopped answering, or restarted: forget (and announce the end of) the clients it owned */
  nodeLost(node: string): void;
  /** a position in the SA cache's history (taken when a node's sync answer starts to arrive) */
  cacheMark(): number;
  /** a node's complete answer to a sync request, which began arriving at cacheMark() `since`,
   *  has arrived: its clients cached before that and not in the answer are gone */
  stateOf(node: string, since: number): void;
}

export interface Bus {
  readonly kind: 'memory' | 'redis';
  readonly nodeId: string;
  /** connect; `deliver` is called for every envelope, local ones synchronously inside publish() */
  start(deliver: DeliverFn, host?: BusHost): Promise<void>;
  /** hand one envelope to every node; never throws, never blocks on the network */
  publish(env: Envelope): void;
  /** connected (the in-process bus always is) */
  isUp(): boolean;
  close(): Promise<void>;
}
