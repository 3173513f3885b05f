// The framer's frame Buffers (protocol/framer.ts). Plain JavaScript on purpose: tsx compiles .ts
// with esbuild's keepNames, whose `static { __name(this) }` in a class keeps V8 from ever
// optimising its constructor here ("dependency change", measured 6x slower); .mjs is loaded as is.
export class FrameBuffer extends Uint8Array {}
Object.setPrototypeOf(FrameBuffer.prototype, Buffer.prototype);
