/**
 * Node module hook: tfjs-core's ES-module build (the only build that carries its gradients) imports
 * its own files without the `.js` extension, which Node's ESM resolver refuses. Applies only to
 * imports made from inside that package's dist folder.
 */
export async function resolve(specifier, context, next) {
  if (
    specifier.startsWith('.') &&
    !/\.[cm]?js$/.test(specifier) &&
    context.parentURL?.includes('/@tensorflow/tfjs-core/dist/')
  ) {
    return next(`${specifier}.js`, context);
  }
  return next(specifier, context);
}
