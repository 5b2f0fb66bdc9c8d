// Resolves k6's built-in modules to the stand-ins beside this file, so node can
// import a k6 script and run its iterations without the k6 binary.
const STUBS = {
  k6: './k6.mjs',
  'k6/http': './http.mjs',
  'k6/metrics': './metrics.mjs',
};

export async function resolve(specifier, context, nextResolve) {
  if (Object.hasOwn(STUBS, specifier)) {
    return { url: new URL(STUBS[specifier], import.meta.url).href, shortCircuit: true };
  }
  return nextResolve(specifier, context);
}
