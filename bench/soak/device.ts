// An ATAK-like device for cluster tests: it connects (through a balancer), sends its SA at once,
// then every second or two, reconnects a moment after losing the stream, and may negotiate TAK
// protobuf as ATAK does. Every connection's frames are kept, so a test can judge the cluster from
// each device's point of view: what it was replayed, what it heard live, what it heard last about
// each uid. Each SA and chat carries a marker in <remarks> (`sa:UID:N`, `chat:UID:N`) so a
// duplicate delivery or an echo to the sender is seen.
import { CotClient, type ClientCreds } from '../../test/helpers/client.ts';
import { TakClient } from '../../test/helpers/takclient.ts';

const ANNOUNCE = 't-x-takp-v';

export interface Conn {
  id: number;
  openedAt: number;
  closedAt: number;
  frames: string[];
  /** index in frames of the announcement: frames before it are the replay */
  replayEnd: number;
}

export interface Heard {
  kind: 'sa' | 'gone' | 'chat' | 'other';
  /** the uid this frame is about: the SA's uid, the delete's link uid, the chat's sender */
  about: string;
  marker: string;
}

/** What a frame says, as a test reads it (not the server's parser). */
export function heard(f: string): Heard {
  const type = /<event[^>]*\stype="([^"]*)"/.exec(f)?.[1] ?? '';
  const marker = /<remarks[^>]*>((?:sa|chat):[^<]*)<\/remarks>/.exec(f)?.[1] ?? '';
  if (type === 't-x-d-d') return { kind: 'gone', about: /<link[^>]*\suid="([^"]*)"/.exec(f)?.[1] ?? '', marker };
  if (marker.startsWith('chat:')) return { kind: 'chat', about: marker.split(':')[1], marker };
  if (marker.startsWith('sa:')) return { kind: 'sa', about: /<event[^>]*\suid="([^"]*)"/.exec(f)?.[1] ?? '', marker };
  return { kind: 'other', about: '', marker };
}

export function saXml(uid: string, callsign: string, marker: string, staleSec = 60): string {
  const t = new Date().toISOString();
  const stale = new Date(Date.now() + staleSec * 1000).toISOString();
  return `<?xml version="1.0" encoding="UTF-8" standalone="yes"?><event version="2.0" uid="${uid}" type="a-f-G-U-C" time="${t}" start="${t}" stale="${stale}" how="m-g">` +
    '<point lat="38.5" lon="-77.1" hae="10.0" ce="9.9" le="9999999.0"/>' +
    `<detail><contact endpoint="*:-1:stcp" callsign="${callsign}"/><__group name="Cyan" role="Team Member"/><remarks>${marker}</remarks></detail></event>`;
}

export function chatXml(fromUid: string, from: string, marker: string, toCallsign: string): string {
  const t = new Date().toISOString();
  const stale = new Date(Date.now() + 86_400_000).toISOString();
  return `<event version="2.0" uid="GeoChat.${from}.${marker}" type="b-t-f" time="${t}" start="${t}" stale="${stale}" how="h-g-i-g-o">` +
    '<point lat="0.0" lon="0.0" hae="9999999.0" ce="9999999.0" le="9999999.0"/>' +
    `<detail><__chat parent="RootContactGroup" groupOwner="false" messageId="${marker}" chatroom="${toCallsign}" id="${toCallsign}" senderCallsign="${from}"><chatgrp uid0="${fromUid}" uid1="${toCallsign}" id="${toCallsign}"/></__chat>` +
    `<link uid="${fromUid}" type="a-f-G-U-C" relation="p-p"/><remarks source="BAO.F.ATAK.${fromUid}" to="${toCallsign}">${marker}</remarks><marti><dest callsign="${toCallsign}"/></marti></detail></event>`;
}

export interface DeviceOptions {
  /** negotiate TAK protobuf after the replay */
  proto?: boolean;
  /** SA every saEveryMs..2×saEveryMs */
  saEveryMs?: number;
  /** the SA's validity (stale - time), s; ATAK: 375 s when stationary (a report every 180 s) */
  staleSec?: number;
  /** wait before reconnecting: [min, max] ms */
  reconnectMs?: [number, number];
}

export class Device {
  readonly conns: Conn[] = [];
  /** markers sent, with when */
  readonly sentChats = new Map<string, { to: string; at: number }>();
  private client: CotClient | TakClient | null = null;
  private conn: Conn | null = null;
  private seq = 0;
  private running = false;
  private timer: NodeJS.Timeout | null = null;
  private nextConnId = 0;
  connectFailures = 0;

  constructor(readonly uid: string, readonly callsign: string, private readonly creds: ClientCreds, private readonly port: () => number, private readonly o: DeviceOptions = {}) {}

  get connected(): boolean { return this.conn !== null && this.conn.closedAt === 0; }
  /** the current connection (or the last) */
  get current(): Conn | undefined { return this.conns[this.conns.length - 1]; }

  start(): void {
    this.running = true;
    void this.connect();
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.client?.close();
  }

  private async connect(): Promise<void> {
    if (!this.running) return;
    let c: CotClient | TakClient;
    try {
      c = this.o.proto ? await TakClient.connect(this.port(), this.creds) : await CotClient.connect(this.port(), this.creds);
    } catch {
      this.connectFailures++;
      this.later(() => this.connect(), this.reconnectDelay());
      return;
    }
    if (!this.running) { c.close(); return; }
    const conn: Conn = { id: ++this.nextConnId, openedAt: Date.now(), closedAt: 0, frames: c.frames, replayEnd: -1 };
    this.conns.push(conn);
    this.client = c;
    this.conn = conn;
    c.sock.on('close', () => {
      conn.closedAt = Date.now();
      if (this.conn === conn) { this.conn = null; this.client = null; }
      if (this.timer) clearTimeout(this.timer);
      this.later(() => this.connect(), this.reconnectDelay());
    });
    if (this.o.proto) {
      // ATAK asks for protobuf once it saw the announcement, then speaks it
      try { await (c as TakClient).negotiate('1', this.uid); } catch { c.close(); return; }
    }
    this.sendSa();
  }

  private reconnectDelay(): number {
    const [lo, hi] = this.o.reconnectMs ?? [1000, 3000];
    return lo + Math.random() * (hi - lo);
  }

  private later(f: () => void, ms: number): void {
    if (!this.running) return;
    this.timer = setTimeout(f, ms);
  }

  private sendSa(): void {
    if (!this.connected || !this.client) return;
    this.client.send(saXml(this.uid, this.callsign, `sa:${this.uid}:${++this.seq}`, this.o.staleSec));
    const every = this.o.saEveryMs ?? 1000;
    this.later(() => this.sendSa(), every + Math.random() * every);
  }

  /** A chat to a callsign (GeoChat with a marti dest); false when not connected. */
  chat(toCallsign: string): boolean {
    if (!this.connected || !this.client) return false;
    const marker = `chat:${this.uid}:${++this.seq}`;
    this.sentChats.set(marker, { to: toCallsign, at: Date.now() });
    this.client.send(chatXml(this.uid, this.callsign, marker, toCallsign));
    return true;
  }
}

/** Index of the announcement in a connection's frames (-1: not yet). */
export function replayEnd(frames: string[]): number {
  return frames.findIndex((f) => f.includes(ANNOUNCE));
}
