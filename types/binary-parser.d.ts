// binary-parser's ESM entry ships no typings under NodeNext resolution; reuse the
// CommonJS build's declarations for the same API.
declare module 'binary-parser' {
  export * from 'binary-parser/dist/binary_parser.js';
}
