// node-gyp-build ships no types; the part lib/binding.ts uses.
declare module 'node-gyp-build' {
  /** Loads the addon of the package in `dir` (build/Release first, then prebuilds/<platform>-<arch>). */
  function load(dir: string): unknown;
  namespace load {
    /** The path of the .node file load(dir) would load; throws when there is none. */
    function resolve(dir: string): string;
  }
  export = load;
}
