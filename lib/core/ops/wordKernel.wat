;; wordcount's kernel: finds the words (runs of bytes other than ASCII whitespace) of a
;; byte range, interns each in an open-addressing hash table and counts it. Built into
;; wordKernelWasm.ts by `npm run wasm`; wordTable.ts owns the memory and its layout.
;;
;; Memory regions, placed by the host (all offsets in bytes):
;;   input   the bytes to scan, followed by at least 128 bytes of spaces
;;   slots   mask + 1 slots of 16 bytes: [hash, arena offset, count, index + 1], 0 = empty
;;   ents    cap entries of 8 bytes: [arena offset, length], by dictionary index
;;   seen    cap slot numbers: the slots whose count went from 0 this call
;;   arena   every distinct word followed by "\n", 16 readable bytes past arenaCap
;;   out     (lookup mode) one dictionary index per word met, in order
;;
;; A scan stops at the start of a word it has no room to insert (size = cap, or the arena
;; full) and returns that position: the host grows the table or the arena, reads out the
;; counts and scans on from there. The host keeps mask + 1 = 2 × cap (load at most 1/2).
(module
  (memory (export "memory") 1)
  (global $slots (export "slots") (mut i32) (i32.const 0))
  (global $mask (export "mask") (mut i32) (i32.const 0))
  (global $ents (export "ents") (mut i32) (i32.const 0))
  (global $size (export "size") (mut i32) (i32.const 0))
  (global $cap (export "cap") (mut i32) (i32.const 0))
  (global $seen (export "seen") (mut i32) (i32.const 0))
  (global $seenN (export "seenN") (mut i32) (i32.const 0))
  (global $arena (export "arena") (mut i32) (i32.const 0))
  (global $used (export "used") (mut i32) (i32.const 0))
  (global $arenaCap (export "arenaCap") (mut i32) (i32.const 0))
  (global $words (export "words") (mut i32) (i32.const 0))
  ;; 0: count words; otherwise lookup mode: write each word's index at out[outN++]
  (global $out (export "out") (mut i32) (i32.const 0))
  (global $outN (export "outN") (mut i32) (i32.const 0))

  ;; One bit per byte of v, set where the byte is ASCII whitespace (9 to 13, or 32).
  (func $ws (param $v v128) (result i32)
    (i8x16.bitmask (v128.or
      (i8x16.eq (local.get $v) (i8x16.splat (i32.const 0x20)))
      (i8x16.le_u (i8x16.sub (local.get $v) (i8x16.splat (i32.const 9))) (i8x16.splat (i32.const 4))))))

  ;; All ones in the first n bytes (n <= 16).
  (func $prefix (param $n i32) (result v128)
    (i8x16.lt_u (v128.const i8x16 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15) (i8x16.splat (local.get $n))))

  ;; The hash's key, set once per instance by the host from a random source: without it, words
  ;; can be made to share one hash (pick the low 8 bytes, solve for the high 8), and each then
  ;; probes past all the others, so counting them takes quadratic time.
  (global $seed (mut i64) (i64.const 0))
  (func (export "seed") (param $k i64) (global.set $seed (local.get $k)))

  ;; Both halves of a piece pass through a multiply, the low one after the key, so that no
  ;; difference between two pieces is known to cancel without the key.
  (func $mix (param $h i64) (param $v v128) (result i64)
    (i64.mul
      (i64.xor
        (i64.mul
          (i64.rotl (i64.mul (i64.xor (local.get $h) (i64x2.extract_lane 0 (local.get $v))) (i64.const 0x9E3779B97F4A7C15))
            (i64.const 29))
          (i64.const 0x94D049BB133111EB))
        (i64.mul (i64x2.extract_lane 1 (local.get $v)) (i64.const 0xBF58476D1CE4E5B9)))
      (i64.const 0xC2B2AE3D27D4EB4F)))

  ;; The hash of [s, s + len): each 16-byte piece mixed in, the last one masked.
  (func $hash (param $s i32) (param $len i32) (result i64)
    (local $h i64)
    (local.set $h (global.get $seed))
    (block $out
      (loop $l
        (br_if $out (i32.le_u (local.get $len) (i32.const 16)))
        (local.set $h (call $mix (local.get $h) (v128.load (local.get $s))))
        (local.set $s (i32.add (local.get $s) (i32.const 16)))
        (local.set $len (i32.sub (local.get $len) (i32.const 16)))
        (br $l)))
    (call $mix (local.get $h) (v128.and (v128.load (local.get $s)) (call $prefix (local.get $len)))))

  ;; Whether [a, a + len) and [b, b + len) hold the same bytes.
  (func $eq (param $a i32) (param $b i32) (param $len i32) (result i32)
    (block $out
      (loop $l
        (br_if $out (i32.le_u (local.get $len) (i32.const 16)))
        (if (v128.any_true (v128.xor (v128.load (local.get $a)) (v128.load (local.get $b))))
          (then (return (i32.const 0))))
        (local.set $a (i32.add (local.get $a) (i32.const 16)))
        (local.set $b (i32.add (local.get $b) (i32.const 16)))
        (local.set $len (i32.sub (local.get $len) (i32.const 16)))
        (br $l)))
    (i32.eqz (v128.any_true
      (v128.and (v128.xor (v128.load (local.get $a)) (v128.load (local.get $b))) (call $prefix (local.get $len))))))

  ;; Scans [i, end), where i is a word's start or whitespace. Returns end, or the start of a
  ;; word that did not fit.
  (func (export "scan") (param $i i32) (param $end i32) (result i32)
    (local $w i64) (local $starts i64) (local $carry i64) (local $rest i64) (local $p i32)
    (local $v v128) (local $m i32) (local $s i32) (local $len i32) (local $h i64) (local $h32 i32)
    (local $cross i32) (local $slot i32) (local $addr i32) (local $e i32) (local $c i32) (local $j i32)
    (local $off i32) (local $iota v128) (local $sp v128) (local $nine v128) (local $four v128)
    (local.set $iota (v128.const i8x16 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15))
    (local.set $sp (i8x16.splat (i32.const 0x20)))
    (local.set $nine (i8x16.splat (i32.const 9)))
    (local.set $four (i8x16.splat (i32.const 4)))
    ;; The byte before i counts as whitespace: a word may start at i.
    (local.set $carry (i64.const 1))
    (block $done
      (loop $outer
        (br_if $done (i32.ge_u (local.get $i) (local.get $end)))
        ;; 64 bytes at a time: w has a bit per whitespace byte, starts one per word start.
        (local.set $w (i64.or
          (i64.or
            (i64.extend_i32_u (i8x16.bitmask (v128.or
              (i8x16.eq (local.tee $v (v128.load (local.get $i))) (local.get $sp))
              (i8x16.le_u (i8x16.sub (local.get $v) (local.get $nine)) (local.get $four)))))
            (i64.shl (i64.extend_i32_u (i8x16.bitmask (v128.or
              (i8x16.eq (local.tee $v (v128.load offset=16 (local.get $i))) (local.get $sp))
              (i8x16.le_u (i8x16.sub (local.get $v) (local.get $nine)) (local.get $four))))) (i64.const 16)))
          (i64.or
            (i64.shl (i64.extend_i32_u (i8x16.bitmask (v128.or
              (i8x16.eq (local.tee $v (v128.load offset=32 (local.get $i))) (local.get $sp))
              (i8x16.le_u (i8x16.sub (local.get $v) (local.get $nine)) (local.get $four))))) (i64.const 32))
            (i64.shl (i64.extend_i32_u (i8x16.bitmask (v128.or
              (i8x16.eq (local.tee $v (v128.load offset=48 (local.get $i))) (local.get $sp))
              (i8x16.le_u (i8x16.sub (local.get $v) (local.get $nine)) (local.get $four))))) (i64.const 48)))))
        (local.set $starts (i64.and (i64.xor (local.get $w) (i64.const -1))
          (i64.or (i64.shl (local.get $w) (i64.const 1)) (local.get $carry))))
        (local.set $carry (i64.shr_u (local.get $w) (i64.const 63)))
        (loop $inner
          (if (i64.eqz (local.get $starts))
            (then (local.set $i (i32.add (local.get $i) (i32.const 64))) (br $outer)))
          (local.set $p (i32.wrap_i64 (i64.ctz (local.get $starts))))
          (local.set $starts (i64.and (local.get $starts) (i64.sub (local.get $starts) (i64.const 1))))
          (local.set $s (i32.add (local.get $i) (local.get $p)))
          (local.set $rest (i64.shr_u (local.get $w) (i64.extend_i32_u (local.get $p))))
          (if (i64.eqz (local.get $rest))
            (then
              ;; The word runs past these 64 bytes: find its end 16 bytes at a time.
              (local.set $j (i32.add (local.get $i) (i32.const 64)))
              (block $found
                (loop $find
                  (local.set $m (call $ws (v128.load (local.get $j))))
                  (br_if $found (local.get $m))
                  (local.set $j (i32.add (local.get $j) (i32.const 16)))
                  (br $find)))
              (local.set $len (i32.sub (i32.add (local.get $j) (i32.ctz (local.get $m))) (local.get $s)))
              (local.set $cross (i32.const 1)))
            (else
              (local.set $len (i32.wrap_i64 (i64.ctz (local.get $rest))))
              (local.set $cross (i32.const 0))))
          (if (i32.le_u (local.get $len) (i32.const 16))
            (then
              (local.set $v (v128.and (v128.load (local.get $s)) (i8x16.lt_u (local.get $iota) (i8x16.splat (local.get $len)))))
              ;; $mix inlined, with h = the key
              (local.set $h (i64.mul
                (i64.xor
                  (i64.mul
                    (i64.rotl
                      (i64.mul (i64.xor (global.get $seed) (i64x2.extract_lane 0 (local.get $v))) (i64.const 0x9E3779B97F4A7C15))
                      (i64.const 29))
                    (i64.const 0x94D049BB133111EB))
                  (i64.mul (i64x2.extract_lane 1 (local.get $v)) (i64.const 0xBF58476D1CE4E5B9)))
                (i64.const 0xC2B2AE3D27D4EB4F))))
            (else (local.set $h (call $hash (local.get $s) (local.get $len)))))
          (local.set $h (i64.mul (i64.xor (local.get $h) (i64.extend_i32_u (local.get $len))) (i64.const 0x9E3779B97F4A7C15)))
          ;; Multiplies carry differences only upward: fold the high bits down (splitmix64's
          ;; finalizer) so that the slot, taken from bits 32 on, depends on every bit of the word.
          (local.set $h (i64.mul (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 30))) (i64.const 0xBF58476D1CE4E5B9)))
          (local.set $h (i64.mul (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 27))) (i64.const 0x94D049BB133111EB)))
          (local.set $h (i64.xor (local.get $h) (i64.shr_u (local.get $h) (i64.const 31))))
          (local.set $h32 (i32.wrap_i64 (i64.shr_u (local.get $h) (i64.const 32))))
          (local.set $slot (i32.and (local.get $h32) (global.get $mask)))
          (block $hit
            (block $miss
              (loop $probe
                (local.set $addr (i32.add (global.get $slots) (i32.shl (local.get $slot) (i32.const 4))))
                (local.set $e (i32.load offset=12 (local.get $addr)))
                (br_if $miss (i32.eqz (local.get $e)))
                (local.set $off (i32.load offset=4 (local.get $addr)))
                ;; Same hash, a "\n" right after len bytes (so the same length) and the same bytes.
                (if (i32.and
                      (i32.eq (i32.load (local.get $addr)) (local.get $h32))
                      (i32.lt_u (i32.add (local.get $off) (local.get $len)) (global.get $used)))
                  (then
                    (if (i32.eq (i32.load8_u (i32.add (global.get $arena) (i32.add (local.get $off) (local.get $len))))
                                (i32.const 10))
                      (then
                        (if (i32.le_u (local.get $len) (i32.const 16))
                          (then
                            (br_if $hit (i32.eqz (v128.any_true (v128.xor (local.get $v)
                              (v128.and (v128.load (i32.add (global.get $arena) (local.get $off)))
                                (i8x16.lt_u (local.get $iota) (i8x16.splat (local.get $len)))))))))
                          (else
                            (br_if $hit (call $eq (i32.add (global.get $arena) (local.get $off)) (local.get $s) (local.get $len)))))))))
                (local.set $slot (i32.and (i32.add (local.get $slot) (i32.const 1)) (global.get $mask)))
                (br $probe)))
            ;; A new word: stop here if there is no room for it.
            (if (i32.or
                  (i32.ge_u (global.get $size) (global.get $cap))
                  (i32.ge_u (local.get $len) (i32.sub (global.get $arenaCap) (global.get $used))))
              (then (return (local.get $s))))
            (local.set $off (global.get $used))
            (local.set $e (i32.add (global.get $size) (i32.const 1)))
            (global.set $size (local.get $e))
            (i32.store (local.get $addr) (local.get $h32))
            (i32.store offset=4 (local.get $addr) (local.get $off))
            (i32.store offset=8 (local.get $addr) (i32.const 0))
            (i32.store offset=12 (local.get $addr) (local.get $e))
            (i32.store (i32.add (global.get $ents) (i32.shl (i32.sub (local.get $e) (i32.const 1)) (i32.const 3))) (local.get $off))
            (i32.store offset=4 (i32.add (global.get $ents) (i32.shl (i32.sub (local.get $e) (i32.const 1)) (i32.const 3)))
              (local.get $len))
            (memory.copy (i32.add (global.get $arena) (local.get $off)) (local.get $s) (local.get $len))
            (i32.store8 (i32.add (global.get $arena) (i32.add (local.get $off) (local.get $len))) (i32.const 10))
            (global.set $used (i32.add (local.get $off) (i32.add (local.get $len) (i32.const 1)))))
          (if (global.get $out)
            (then
              (i32.store (i32.add (global.get $out) (i32.shl (global.get $outN) (i32.const 2)))
                (i32.sub (local.get $e) (i32.const 1)))
              (global.set $outN (i32.add (global.get $outN) (i32.const 1))))
            (else
              (local.set $c (i32.load offset=8 (local.get $addr)))
              (if (i32.eqz (local.get $c))
                (then
                  (i32.store (i32.add (global.get $seen) (i32.shl (global.get $seenN) (i32.const 2))) (local.get $slot))
                  (global.set $seenN (i32.add (global.get $seenN) (i32.const 1)))))
              (i32.store offset=8 (local.get $addr) (i32.add (local.get $c) (i32.const 1)))
              (global.set $words (i32.add (global.get $words) (i32.const 1)))))
          (if (local.get $cross)
            (then
              (local.set $i (i32.add (local.get $s) (local.get $len)))
              (local.set $carry (i64.const 1))
              (br $outer)))
          (br $inner))))
    (local.get $end))

  ;; Moves the occupied slots of [from, from + count × 16) into the table at slots/mask.
  (func (export "rehash") (param $from i32) (param $count i32)
    (local $end i32) (local $slot i32) (local $to i32)
    (local.set $end (i32.add (local.get $from) (i32.shl (local.get $count) (i32.const 4))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $from) (local.get $end)))
        (if (i32.load offset=12 (local.get $from))
          (then
            (local.set $slot (i32.and (i32.load (local.get $from)) (global.get $mask)))
            (block $free
              (loop $probe
                (local.set $to (i32.add (global.get $slots) (i32.shl (local.get $slot) (i32.const 4))))
                (br_if $free (i32.eqz (i32.load offset=12 (local.get $to))))
                (local.set $slot (i32.and (i32.add (local.get $slot) (i32.const 1)) (global.get $mask)))
                (br $probe)))
            (v128.store (local.get $to) (v128.load (local.get $from)))))
        (local.set $from (i32.add (local.get $from) (i32.const 16)))
        (br $l))))

  ;; Writes the index and count of each word on the seen list to indexes[] and counts[],
  ;; zeroes those counts and empties the list; returns how many.
  (func (export "drain") (param $indexes i32) (param $counts i32) (result i32)
    (local $n i32) (local $k i32) (local $addr i32)
    (local.set $n (global.get $seenN))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $k) (local.get $n)))
        (local.set $addr (i32.add (global.get $slots)
          (i32.shl (i32.load (i32.add (global.get $seen) (i32.shl (local.get $k) (i32.const 2)))) (i32.const 4))))
        (i32.store (i32.add (local.get $indexes) (i32.shl (local.get $k) (i32.const 2)))
          (i32.sub (i32.load offset=12 (local.get $addr)) (i32.const 1)))
        (i32.store (i32.add (local.get $counts) (i32.shl (local.get $k) (i32.const 2))) (i32.load offset=8 (local.get $addr)))
        (i32.store offset=8 (local.get $addr) (i32.const 0))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $l)))
    (global.set $seenN (i32.const 0))
    (local.get $n))
)
