/** Bytes queued in the pieces they came in: a run that lies inside one piece is taken without a copy. */
export class ByteQueue {
  #parts: Buffer[] = [];
  #length = 0;

  get length(): number {
    return this.#length;
  }

  push(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.#parts.push(bytes);
    this.#length += bytes.length;
  }

  /** Puts bytes back in front (taken with shift() and not used). */
  unshift(bytes: Buffer): void {
    if (bytes.length === 0) return;
    this.#parts.unshift(bytes);
    this.#length += bytes.length;
  }

  /** The first piece, removed (undefined when empty). */
  shift(): Buffer | undefined {
    const first = this.#parts.shift();
    if (first) this.#length -= first.length;
    return first;
  }

  /** Byte `i` (i < length). */
  byte(i: number): number {
    for (const part of this.#parts) {
      if (i < part.length) return part[i]!;
      i -= part.length;
    }
    return -1;
  }

  /** The first `n` bytes (n ≤ length; fewer when fewer are queued), left queued. */
  peek(n: number): Buffer {
    const first = this.#parts[0];
    if (!first) return Buffer.alloc(0);
    return first.length >= Math.min(n, this.#length) ? first.subarray(0, n) : Buffer.concat(this.#parts, this.#length).subarray(0, n);
  }

  /** The first `n` bytes (n ≤ length), removed: only a run across pieces is copied. */
  take(n: number): Buffer {
    const first = this.#parts[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
    } else {
      out = Buffer.allocUnsafe(n);
      let copied = 0;
      for (const part of this.#parts) {
        const k = Math.min(part.length, n - copied);
        part.copy(out, copied, 0, k);
        copied += k;
        if (copied === n) break;
      }
    }
    this.#length -= n;
    let left = n;
    while (left > 0) {
      const head = this.#parts[0]!;
      if (head.length > left) {
        this.#parts[0] = head.subarray(left);
        break;
      }
      left -= head.length;
      this.#parts.shift();
    }
    return out;
  }
}
