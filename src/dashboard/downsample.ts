/**
 * A long curve cut to what a chart can show: the points between `from` and `to` in buckets of equal
 * count, each bucket giving its lowest and its highest point in step order. Spikes survive (a loss
 * that jumps to 40 at one step still reaches 40 on the chart, where striding would skip it), and the
 * first and last points are always kept, so the curve spans the whole range asked for.
 */

export interface Curve {
  x: number[];
  y: number[];
}

/** First index with xs[i] >= v (`inclusive`) or xs[i] > v, xs ascending. */
export function bound(xs: ArrayLike<number>, v: number, inclusive: boolean): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid]! < v || (!inclusive && xs[mid]! === v)) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * At most `maxPoints` points (an even number >= 4) of the curve (xs ascending, ys finite) inside
 * [from, to]; all of them when there are no more than that.
 */
export function minMaxDownsample(
  xs: ArrayLike<number>,
  ys: ArrayLike<number>,
  maxPoints: number,
  from = Number.NEGATIVE_INFINITY,
  to = Number.POSITIVE_INFINITY,
): Curve {
  const start = bound(xs, from, true);
  const end = bound(xs, to, false);
  const n = end - start;
  const x: number[] = [];
  const y: number[] = [];
  if (n <= maxPoints) {
    for (let i = start; i < end; i++) {
      x.push(xs[i]!);
      y.push(ys[i]!);
    }
    return { x, y };
  }
  // Two points per bucket, less the first and last points kept on their own.
  const buckets = Math.max(1, Math.floor((maxPoints - 2) / 2));
  const push = (i: number) => {
    x.push(xs[i]!);
    y.push(ys[i]!);
  };
  push(start);
  const inner = n - 2;
  for (let b = 0; b < buckets; b++) {
    const lo = start + 1 + Math.floor((b * inner) / buckets);
    const hi = start + 1 + Math.floor(((b + 1) * inner) / buckets);
    if (hi <= lo) continue;
    let iMin = lo;
    let iMax = lo;
    for (let i = lo + 1; i < hi; i++) {
      if (ys[i]! < ys[iMin]!) iMin = i;
      if (ys[i]! > ys[iMax]!) iMax = i;
    }
    if (iMin === iMax) push(iMin);
    else if (iMin < iMax) {
      push(iMin);
      push(iMax);
    } else {
      push(iMax);
      push(iMin);
    }
  }
  push(end - 1);
  return { x, y };
}
