/**
 * The 21-point Gauss–Kronrod rule (QUADPACK's QK21), which is what `scipy.integrate.quad`
 * evaluates first and, for smooth low-degree integrands, returns. The rule integrates
 * polynomials up to degree 31 exactly, and its 10-point Gauss sub-rule (degree 19) gives the
 * error estimate.
 */

/** Kronrod abscissae on [-1, 1] (positive half, descending; the odd entries are the Gauss nodes). */
const XGK = [
  0.995657163025808080735527280689003, 0.973906528517171720077964012084452, 0.930157491355708226001207180059508,
  0.865063366688984510732096688423493, 0.780817726586416897063717578345042, 0.679409568299024406234327365114874,
  0.562757134668604683339000099272694, 0.433395394129247190799265943165784, 0.294392862701460198131126603103866,
  0.14887433898163121088482600112972, 0,
] as const;
/** Kronrod weights, matching XGK. */
const WGK = [
  0.011694638867371874278064396062192, 0.03255816230796472747881897245939, 0.05475589657435199603138130024458,
  0.07503967481091995276704314091619, 0.093125454583697605535065465083366, 0.109387158802297641899210590325805,
  0.123491976262065851077958109831074, 0.134709217311473325928054001771707, 0.142775938577060080797094273138717,
  0.147739104901338491374841515972068, 0.149445554002916905664936468389821,
] as const;
/** Weights of the 10-point Gauss rule at XGK[1], XGK[3], …, XGK[9]. */
const WG = [
  0.066671344308688137593568809893332, 0.149451349150580593145776339657697, 0.219086362515982043995534934228163,
  0.269266719309996355091226921569469, 0.295524224714752870173892994651338,
] as const;

const EPMACH = Number.EPSILON;
const UFLOW = Number.MIN_VALUE * 2 ** 52; // smallest normal double

export interface QuadResult {
  readonly result: number;
  readonly abserr: number;
  readonly resabs: number;
}

/**
 * ∫_a^b f by QK21, summing in QUADPACK's order (center, then the Gauss nodes, then the others)
 * so the rounding matches scipy.
 */
export function gaussKronrod21(f: (x: number) => number, a: number, b: number): QuadResult {
  const centr = 0.5 * (a + b);
  const hlgth = 0.5 * (b - a);
  const fc = f(centr);
  let resg = 0;
  let resk = WGK[10] * fc;
  let resabs = Math.abs(resk);
  const fv1 = new Array<number>(10);
  const fv2 = new Array<number>(10);
  // Every j below is in [0, 10): XGK and WGK have 11 entries, WG 5 (for the odd j), and visit
  // fills fv1[j], fv2[j] for all ten before the last loop reads them.
  const visit = (j: number): number => {
    const absc = hlgth * XGK[j]!;
    const lo = f(centr - absc);
    const hi = f(centr + absc);
    fv1[j] = lo;
    fv2[j] = hi;
    const fsum = lo + hi;
    resk += WGK[j]! * fsum;
    resabs += WGK[j]! * (Math.abs(lo) + Math.abs(hi));
    return fsum;
  };
  for (let j = 1; j < 10; j += 2) resg += WG[(j - 1) / 2]! * visit(j);
  for (let j = 0; j < 10; j += 2) visit(j);
  const reskh = resk * 0.5;
  let resasc = WGK[10] * Math.abs(fc - reskh);
  for (let j = 0; j < 10; j++) resasc += WGK[j]! * (Math.abs(fv1[j]! - reskh) + Math.abs(fv2[j]! - reskh));
  const dh = Math.abs(hlgth);
  resabs *= dh;
  resasc *= dh;
  let abserr = Math.abs((resk - resg) * hlgth);
  if (resasc !== 0 && abserr !== 0) abserr = resasc * Math.min(1, (200 * abserr / resasc) ** 1.5);
  if (resabs > UFLOW / (50 * EPMACH)) abserr = Math.max(EPMACH * 50 * resabs, abserr);
  return { result: resk * hlgth, abserr, resabs };
}

/**
 * Whether `scipy.integrate.quad(..., epsrel)` stops after the first QK21 (QUADPACK's QAGSE
 * acceptance test); otherwise it would bisect.
 */
export function quadAcceptsFirstRule(q: QuadResult, epsrel: number, epsabs = 1.49e-8): boolean {
  const errbnd = Math.max(epsabs, epsrel * Math.abs(q.result));
  if (q.abserr <= 100 * EPMACH * q.resabs && q.abserr > errbnd) return true;
  return (q.abserr <= errbnd && q.abserr !== q.resabs) || q.abserr === 0;
}
