/** a view of `length` bytes of `buffer` from `byteOffset` that is a Buffer (see framebuffer.mjs) */
export declare const FrameBuffer: new (buffer: ArrayBufferLike, byteOffset: number, length: number) => Buffer;
