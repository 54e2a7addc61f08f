;; Fused element-wise kernels of the native kernel pack, run in place on TensorFlow.js's WASM heap (the
;; module imports that memory; every pointer is a byte offset into it). Each one pass over its rows
;; where tfjs ran 3–15 kernels, each a pass of its own and an engine op (see fused.ts).
;; fused.ts puts the import of the backend's heap (plain or shared) in place of the line below.
(module
  ;; import-memory

  ;; The first `count` (0–3) floats at p, zeros after: the tail of a row that is not a multiple of 4.
  (func $load_tail (param $p i32) (param $count i32) (result v128)
    (local $v v128)
    (local.set $v (v128.const i32x4 0 0 0 0))
    (if (i32.gt_s (local.get $count) (i32.const 0))
      (then (local.set $v (f32x4.replace_lane 0 (local.get $v) (f32.load (local.get $p))))))
    (if (i32.gt_s (local.get $count) (i32.const 1))
      (then (local.set $v (f32x4.replace_lane 1 (local.get $v) (f32.load offset=4 (local.get $p))))))
    (if (i32.gt_s (local.get $count) (i32.const 2))
      (then (local.set $v (f32x4.replace_lane 2 (local.get $v) (f32.load offset=8 (local.get $p))))))
    (local.get $v))

  (func $store_tail (param $p i32) (param $count i32) (param $v v128)
    (if (i32.gt_s (local.get $count) (i32.const 0))
      (then (f32.store (local.get $p) (f32x4.extract_lane 0 (local.get $v)))))
    (if (i32.gt_s (local.get $count) (i32.const 1))
      (then (f32.store offset=4 (local.get $p) (f32x4.extract_lane 1 (local.get $v)))))
    (if (i32.gt_s (local.get $count) (i32.const 2))
      (then (f32.store offset=8 (local.get $p) (f32x4.extract_lane 2 (local.get $v))))))

  (func $hsum (param $v v128) (result f32)
    (f32.add
      (f32.add (f32x4.extract_lane 0 (local.get $v)) (f32x4.extract_lane 1 (local.get $v)))
      (f32.add (f32x4.extract_lane 2 (local.get $v)) (f32x4.extract_lane 3 (local.get $v)))))

  ;; The gradient of GELU's sigmoid form y = x·s, s = σ(1.702x) kept from the forward pass (WASM's own
  ;; Sigmoid computes it faster than an exp here would): dx = dy·(s + 1.702·x·s·(1 − s)), over n floats.
  (func (export "gelu_grad") (param $x i32) (param $s i32) (param $dy i32) (param $dx i32) (param $n i32)
    (local $i i32) (local $o i32) (local $count i32) (local $v v128) (local $sv v128) (local $d v128)
    (block $done (loop $next
      (local.set $count (i32.sub (local.get $n) (local.get $i)))
      (br_if $done (i32.le_s (local.get $count) (i32.const 0)))
      (local.set $o (i32.shl (local.get $i) (i32.const 2)))
      (if (i32.ge_s (local.get $count) (i32.const 4))
        (then
          (local.set $v (v128.load (i32.add (local.get $x) (local.get $o))))
          (local.set $sv (v128.load (i32.add (local.get $s) (local.get $o))))
          (local.set $d (v128.load (i32.add (local.get $dy) (local.get $o)))))
        (else
          (local.set $v (call $load_tail (i32.add (local.get $x) (local.get $o)) (local.get $count)))
          (local.set $sv (call $load_tail (i32.add (local.get $s) (local.get $o)) (local.get $count)))
          (local.set $d (call $load_tail (i32.add (local.get $dy) (local.get $o)) (local.get $count)))))
      (local.set $d
        (f32x4.mul (local.get $d)
          (f32x4.add (local.get $sv)
            (f32x4.mul (f32x4.mul (local.get $v) (v128.const f32x4 1.702 1.702 1.702 1.702))
              (f32x4.mul (local.get $sv) (f32x4.sub (v128.const f32x4 1 1 1 1) (local.get $sv)))))))
      (if (i32.ge_s (local.get $count) (i32.const 4))
        (then (v128.store (i32.add (local.get $dx) (local.get $o)) (local.get $d)))
        (else (call $store_tail (i32.add (local.get $dx) (local.get $o)) (local.get $count) (local.get $d))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $next))))

  ;; RMSNorm of `rows` rows of `cols`: r = 1/√(mean(x²) + eps) per row (written to r), y = (x·r)·(1 + scale);
  ;; scale = 0 (a null pointer) is a gain of exactly 1 (the sampler folds the gains into its projections).
  (func (export "rms_norm")
    (param $x i32) (param $scale i32) (param $y i32) (param $r i32) (param $rows i32) (param $cols i32) (param $eps f32)
    (local $row i32) (local $j i32) (local $acc v128) (local $v v128) (local $inv f32) (local $rv v128)
    (local $tail i32) (local $body i32)
    (local.set $tail (i32.and (local.get $cols) (i32.const 3)))
    (local.set $body (i32.sub (local.get $cols) (local.get $tail)))
    (block $rows_done (loop $rows
      (br_if $rows_done (i32.ge_s (local.get $row) (local.get $rows)))
      (local.set $acc (v128.const i32x4 0 0 0 0))
      (local.set $j (i32.const 0))
      (block $d1 (loop $l1
        (br_if $d1 (i32.ge_s (local.get $j) (local.get $body)))
        (local.set $v (v128.load (i32.add (local.get $x) (i32.shl (local.get $j) (i32.const 2)))))
        (local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (local.get $v) (local.get $v))))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $l1)))
      (local.set $v (call $load_tail (i32.add (local.get $x) (i32.shl (local.get $j) (i32.const 2))) (local.get $tail)))
      (local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (local.get $v) (local.get $v))))
      (local.set $inv (f32.div (f32.const 1)
        (f32.sqrt (f32.add (f32.div (call $hsum (local.get $acc)) (f32.convert_i32_s (local.get $cols))) (local.get $eps)))))
      (f32.store (local.get $r) (local.get $inv))
      (local.set $rv (f32x4.splat (local.get $inv)))
      (local.set $j (i32.const 0))
      (block $d2 (loop $l2
        (br_if $d2 (i32.ge_s (local.get $j) (local.get $body)))
        (v128.store (i32.add (local.get $y) (i32.shl (local.get $j) (i32.const 2)))
          (f32x4.mul
            (f32x4.mul (v128.load (i32.add (local.get $x) (i32.shl (local.get $j) (i32.const 2)))) (local.get $rv))
            (if (result v128) (local.get $scale)
              (then (f32x4.add (v128.load (i32.add (local.get $scale) (i32.shl (local.get $j) (i32.const 2)))) (f32x4.splat (f32.const 1))))
              (else (f32x4.splat (f32.const 1))))))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $l2)))
      (call $store_tail (i32.add (local.get $y) (i32.shl (local.get $j) (i32.const 2))) (local.get $tail)
        (f32x4.mul
          (f32x4.mul (call $load_tail (i32.add (local.get $x) (i32.shl (local.get $j) (i32.const 2))) (local.get $tail)) (local.get $rv))
          (if (result v128) (local.get $scale)
            (then (f32x4.add (call $load_tail (i32.add (local.get $scale) (i32.shl (local.get $j) (i32.const 2))) (local.get $tail)) (f32x4.splat (f32.const 1))))
            (else (f32x4.splat (f32.const 1))))))
      (local.set $x (i32.add (local.get $x) (i32.shl (local.get $cols) (i32.const 2))))
      (local.set $y (i32.add (local.get $y) (i32.shl (local.get $cols) (i32.const 2))))
      (local.set $r (i32.add (local.get $r) (i32.const 4)))
      (local.set $row (i32.add (local.get $row) (i32.const 1)))
      (br $rows)))
  )

  ;; The gradient of rms_norm: with n = x·r and g = dy·(1 + scale), dx = r·(g − n·mean(g·n)) per row and
  ;; dscale = Σ_rows dy·n (dscale is overwritten).
  (func (export "rms_norm_grad")
    (param $dy i32) (param $x i32) (param $r i32) (param $scale i32) (param $dx i32) (param $dscale i32)
    (param $rows i32) (param $cols i32)
    (local $row i32) (local $j i32) (local $acc v128) (local $g v128) (local $n v128) (local $rv v128) (local $mv v128)
    (local $tail i32) (local $body i32) (local $o i32)
    (local.set $tail (i32.and (local.get $cols) (i32.const 3)))
    (local.set $body (i32.sub (local.get $cols) (local.get $tail)))
    (memory.fill (local.get $dscale) (i32.const 0) (i32.shl (local.get $cols) (i32.const 2)))
    (block $rows_done (loop $rows
      (br_if $rows_done (i32.ge_s (local.get $row) (local.get $rows)))
      (local.set $rv (f32x4.splat (f32.load (local.get $r))))
      (local.set $acc (v128.const i32x4 0 0 0 0))
      (local.set $j (i32.const 0))
      (block $d1 (loop $l1
        (br_if $d1 (i32.ge_s (local.get $j) (local.get $cols)))
        (local.set $o (i32.shl (local.get $j) (i32.const 2)))
        (if (i32.lt_s (local.get $j) (local.get $body))
          (then
            (local.set $g (f32x4.mul (v128.load (i32.add (local.get $dy) (local.get $o)))
              (f32x4.add (v128.load (i32.add (local.get $scale) (local.get $o))) (f32x4.splat (f32.const 1)))))
            (local.set $n (f32x4.mul (v128.load (i32.add (local.get $x) (local.get $o))) (local.get $rv))))
          (else
            (local.set $g (f32x4.mul (call $load_tail (i32.add (local.get $dy) (local.get $o)) (local.get $tail))
              (f32x4.add (call $load_tail (i32.add (local.get $scale) (local.get $o)) (local.get $tail)) (f32x4.splat (f32.const 1)))))
            (local.set $n (f32x4.mul (call $load_tail (i32.add (local.get $x) (local.get $o)) (local.get $tail)) (local.get $rv)))))
        (local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (local.get $g) (local.get $n))))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $l1)))
      (local.set $mv (f32x4.splat (f32.div (call $hsum (local.get $acc)) (f32.convert_i32_s (local.get $cols)))))
      (local.set $j (i32.const 0))
      (block $d2 (loop $l2
        (br_if $d2 (i32.ge_s (local.get $j) (local.get $cols)))
        (local.set $o (i32.shl (local.get $j) (i32.const 2)))
        (if (i32.lt_s (local.get $j) (local.get $body))
          (then
            (local.set $g (f32x4.mul (v128.load (i32.add (local.get $dy) (local.get $o)))
              (f32x4.add (v128.load (i32.add (local.get $scale) (local.get $o))) (f32x4.splat (f32.const 1)))))
            (local.set $n (f32x4.mul (v128.load (i32.add (local.get $x) (local.get $o))) (local.get $rv)))
            (v128.store (i32.add (local.get $dx) (local.get $o))
              (f32x4.mul (local.get $rv) (f32x4.sub (local.get $g) (f32x4.mul (local.get $n) (local.get $mv)))))
            (v128.store (i32.add (local.get $dscale) (local.get $o))
              (f32x4.add (v128.load (i32.add (local.get $dscale) (local.get $o)))
                (f32x4.mul (v128.load (i32.add (local.get $dy) (local.get $o))) (local.get $n)))))
          (else
            (local.set $g (f32x4.mul (call $load_tail (i32.add (local.get $dy) (local.get $o)) (local.get $tail))
              (f32x4.add (call $load_tail (i32.add (local.get $scale) (local.get $o)) (local.get $tail)) (f32x4.splat (f32.const 1)))))
            (local.set $n (f32x4.mul (call $load_tail (i32.add (local.get $x) (local.get $o)) (local.get $tail)) (local.get $rv)))
            (call $store_tail (i32.add (local.get $dx) (local.get $o)) (local.get $tail)
              (f32x4.mul (local.get $rv) (f32x4.sub (local.get $g) (f32x4.mul (local.get $n) (local.get $mv)))))
            (call $store_tail (i32.add (local.get $dscale) (local.get $o)) (local.get $tail)
              (f32x4.add (call $load_tail (i32.add (local.get $dscale) (local.get $o)) (local.get $tail))
                (f32x4.mul (call $load_tail (i32.add (local.get $dy) (local.get $o)) (local.get $tail)) (local.get $n))))))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $l2)))
      (local.set $dy (i32.add (local.get $dy) (i32.shl (local.get $cols) (i32.const 2))))
      (local.set $x (i32.add (local.get $x) (i32.shl (local.get $cols) (i32.const 2))))
      (local.set $dx (i32.add (local.get $dx) (i32.shl (local.get $cols) (i32.const 2))))
      (local.set $r (i32.add (local.get $r) (i32.const 4)))
      (local.set $row (i32.add (local.get $row) (i32.const 1)))
      (br $rows)))
  )

  ;; One AdamW step over n floats (optax's adamw, as optimizer.ts writes it in tfjs ops, in the same
  ;; order of operations): g' = g·clip; m' = m·b1 + g'·(1 − b1); v' = v·b2 + g'²·(1 − b2);
  ;; p' = p − lr·((m'/c1) / (√(v'/c2) + eps) + wd·p). New p', m', v' go to po, mo, vo.
  (func (export "adamw")
    (param $p i32) (param $g i32) (param $m i32) (param $v i32) (param $po i32) (param $mo i32) (param $vo i32)
    (param $n i32) (param $clip f32) (param $b1 f32) (param $nb1 f32) (param $b2 f32) (param $nb2 f32)
    (param $c1 f32) (param $c2 f32) (param $eps f32) (param $wd f32) (param $lr f32)
    (local $i i32) (local $o i32) (local $count i32)
    (local $gv v128) (local $pv v128) (local $m1 v128) (local $v1 v128) (local $p1 v128) (local $u v128)
    (block $done (loop $next
      (local.set $count (i32.sub (local.get $n) (local.get $i)))
      (br_if $done (i32.le_s (local.get $count) (i32.const 0)))
      (local.set $o (i32.shl (local.get $i) (i32.const 2)))
      (if (i32.ge_s (local.get $count) (i32.const 4))
        (then
          (local.set $gv (v128.load (i32.add (local.get $g) (local.get $o))))
          (local.set $pv (v128.load (i32.add (local.get $p) (local.get $o))))
          (local.set $m1 (v128.load (i32.add (local.get $m) (local.get $o))))
          (local.set $v1 (v128.load (i32.add (local.get $v) (local.get $o)))))
        (else
          (local.set $gv (call $load_tail (i32.add (local.get $g) (local.get $o)) (local.get $count)))
          (local.set $pv (call $load_tail (i32.add (local.get $p) (local.get $o)) (local.get $count)))
          (local.set $m1 (call $load_tail (i32.add (local.get $m) (local.get $o)) (local.get $count)))
          (local.set $v1 (call $load_tail (i32.add (local.get $v) (local.get $o)) (local.get $count)))))
      (local.set $gv (f32x4.mul (local.get $gv) (f32x4.splat (local.get $clip))))
      (local.set $m1 (f32x4.add (f32x4.mul (local.get $m1) (f32x4.splat (local.get $b1)))
        (f32x4.mul (local.get $gv) (f32x4.splat (local.get $nb1)))))
      (local.set $v1 (f32x4.add (f32x4.mul (local.get $v1) (f32x4.splat (local.get $b2)))
        (f32x4.mul (f32x4.mul (local.get $gv) (local.get $gv)) (f32x4.splat (local.get $nb2)))))
      (local.set $u (f32x4.div (f32x4.div (local.get $m1) (f32x4.splat (local.get $c1)))
        (f32x4.add (f32x4.sqrt (f32x4.div (local.get $v1) (f32x4.splat (local.get $c2)))) (f32x4.splat (local.get $eps)))))
      (local.set $u (f32x4.add (local.get $u) (f32x4.mul (local.get $pv) (f32x4.splat (local.get $wd)))))
      (local.set $p1 (f32x4.sub (local.get $pv) (f32x4.mul (local.get $u) (f32x4.splat (local.get $lr)))))
      (if (i32.ge_s (local.get $count) (i32.const 4))
        (then
          (v128.store (i32.add (local.get $po) (local.get $o)) (local.get $p1))
          (v128.store (i32.add (local.get $mo) (local.get $o)) (local.get $m1))
          (v128.store (i32.add (local.get $vo) (local.get $o)) (local.get $v1)))
        (else
          (call $store_tail (i32.add (local.get $po) (local.get $o)) (local.get $count) (local.get $p1))
          (call $store_tail (i32.add (local.get $mo) (local.get $o)) (local.get $count) (local.get $m1))
          (call $store_tail (i32.add (local.get $vo) (local.get $o)) (local.get $count) (local.get $v1))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $next))))

  ;; out = e·decay + p·(1 − decay) over n floats (the EMA of the weights); nd is 1 − decay.
  (func (export "ema") (param $e i32) (param $p i32) (param $out i32) (param $n i32) (param $decay f32) (param $nd f32)
    (local $i i32) (local $o i32) (local $count i32) (local $r v128)
    (block $done (loop $next
      (local.set $count (i32.sub (local.get $n) (local.get $i)))
      (br_if $done (i32.le_s (local.get $count) (i32.const 0)))
      (local.set $o (i32.shl (local.get $i) (i32.const 2)))
      (if (i32.ge_s (local.get $count) (i32.const 4))
        (then
          (v128.store (i32.add (local.get $out) (local.get $o))
            (f32x4.add (f32x4.mul (v128.load (i32.add (local.get $e) (local.get $o))) (f32x4.splat (local.get $decay)))
              (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o))) (f32x4.splat (local.get $nd))))))
        (else
          (local.set $r
            (f32x4.add (f32x4.mul (call $load_tail (i32.add (local.get $e) (local.get $o)) (local.get $count)) (f32x4.splat (local.get $decay)))
              (f32x4.mul (call $load_tail (i32.add (local.get $p) (local.get $o)) (local.get $count)) (f32x4.splat (local.get $nd)))))
          (call $store_tail (i32.add (local.get $out) (local.get $o)) (local.get $count) (local.get $r))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $next))))

  ;; Σ x² over n floats, accumulated in float64 (the global gradient norm).
  (func (export "sum_squares") (param $x i32) (param $n i32) (result f64)
    (local $i i32) (local $o i32) (local $count i32) (local $v v128) (local $lo v128) (local $hi v128)
    (local.set $lo (v128.const f64x2 0 0))
    (local.set $hi (v128.const f64x2 0 0))
    (block $done (loop $next
      (local.set $count (i32.sub (local.get $n) (local.get $i)))
      (br_if $done (i32.le_s (local.get $count) (i32.const 0)))
      (local.set $o (i32.add (local.get $x) (i32.shl (local.get $i) (i32.const 2))))
      (if (i32.ge_s (local.get $count) (i32.const 4))
        (then (local.set $v (v128.load (local.get $o))))
        (else (local.set $v (call $load_tail (local.get $o) (local.get $count)))))
      (local.set $lo (f64x2.add (local.get $lo)
        (f64x2.mul (f64x2.promote_low_f32x4 (local.get $v)) (f64x2.promote_low_f32x4 (local.get $v)))))
      (local.set $v (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v)))
      (local.set $hi (f64x2.add (local.get $hi)
        (f64x2.mul (f64x2.promote_low_f32x4 (local.get $v)) (f64x2.promote_low_f32x4 (local.get $v)))))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $next)))
    (local.set $lo (f64x2.add (local.get $lo) (local.get $hi)))
    (f64.add (f64x2.extract_lane 0 (local.get $lo)) (f64x2.extract_lane 1 (local.get $lo))))

  ;; The softmax's gradient, row by row: ds = p·(dp − Σ_row dp·p) for `rows` rows of `cols`.
  (func (export "softmax_grad") (param $p i32) (param $dp i32) (param $ds i32) (param $rows i32) (param $cols i32)
    (local $row i32) (local $j i32) (local $o i32) (local $count i32) (local $acc v128) (local $pv v128) (local $dv v128)
    (local $sv v128)
    (block $rows_done (loop $rows
      (br_if $rows_done (i32.ge_s (local.get $row) (local.get $rows)))
      (local.set $acc (v128.const i32x4 0 0 0 0))
      (local.set $j (i32.const 0))
      (block $d1 (loop $l1
        (local.set $count (i32.sub (local.get $cols) (local.get $j)))
        (br_if $d1 (i32.le_s (local.get $count) (i32.const 0)))
        (local.set $o (i32.shl (local.get $j) (i32.const 2)))
        (if (i32.ge_s (local.get $count) (i32.const 4))
          (then
            (local.set $acc (f32x4.add (local.get $acc)
              (f32x4.mul (v128.load (i32.add (local.get $p) (local.get $o))) (v128.load (i32.add (local.get $dp) (local.get $o)))))))
          (else
            (local.set $acc (f32x4.add (local.get $acc)
              (f32x4.mul (call $load_tail (i32.add (local.get $p) (local.get $o)) (local.get $count))
                (call $load_tail (i32.add (local.get $dp) (local.get $o)) (local.get $count)))))))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $l1)))
      (local.set $sv (f32x4.splat (call $hsum (local.get $acc))))
      (local.set $j (i32.const 0))
      (block $d2 (loop $l2
        (local.set $count (i32.sub (local.get $cols) (local.get $j)))
        (br_if $d2 (i32.le_s (local.get $count) (i32.const 0)))
        (local.set $o (i32.shl (local.get $j) (i32.const 2)))
        (if (i32.ge_s (local.get $count) (i32.const 4))
          (then
            (local.set $pv (v128.load (i32.add (local.get $p) (local.get $o))))
            (local.set $dv (v128.load (i32.add (local.get $dp) (local.get $o))))
            (v128.store (i32.add (local.get $ds) (local.get $o))
              (f32x4.mul (local.get $pv) (f32x4.sub (local.get $dv) (local.get $sv)))))
          (else
            (local.set $pv (call $load_tail (i32.add (local.get $p) (local.get $o)) (local.get $count)))
            (local.set $dv (call $load_tail (i32.add (local.get $dp) (local.get $o)) (local.get $count)))
            (call $store_tail (i32.add (local.get $ds) (local.get $o)) (local.get $count)
              (f32x4.mul (local.get $pv) (f32x4.sub (local.get $dv) (local.get $sv))))))
        (local.set $j (i32.add (local.get $j) (i32.const 4)))
        (br $l2)))
      (local.set $p (i32.add (local.get $p) (i32.shl (local.get $cols) (i32.const 2))))
      (local.set $dp (i32.add (local.get $dp) (i32.shl (local.get $cols) (i32.const 2))))
      (local.set $ds (i32.add (local.get $ds) (i32.shl (local.get $cols) (i32.const 2))))
      (local.set $row (i32.add (local.get $row) (i32.const 1)))
      (br $rows))))
)
