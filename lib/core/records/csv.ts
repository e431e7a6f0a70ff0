/**
 * CSV records, one per line (RFC 4180 fields: separator, quotes, doubled quotes).
 * A quoted field may hold separators and quotes but not a newline: records are cut on
 * newlines so that any byte range can be read on its own. A quote still open at the end
 * of a line is a BAD_RECORD error naming its offset, never a silent merge of lines.
 */
import { badRecord } from "../errors.js";

export interface CsvOptions {
  readonly separator: string;
  readonly quote: string;
}

export const parseCsvLine = (line: string, offset: number, { separator, quote }: CsvOptions): string[] => {
  const fields: string[] = [];
  let i = 0;
  const n = line.length;
  for (;;) {
    if (line.startsWith(quote, i)) {
      let value = "";
      let j = i + 1;
      for (;;) {
        const q = line.indexOf(quote, j);
        if (q < 0) {
          throw badRecord("unterminated quoted field: a quoted field may not contain a newline (one record per line)", offset);
        }
        value += line.slice(j, q);
        if (line.startsWith(quote, q + 1)) {
          value += quote;
          j = q + 2;
          continue;
        }
        i = q + 1;
        break;
      }
      fields.push(value);
      if (i === n) return fields;
      if (!line.startsWith(separator, i)) {
        throw badRecord(`unexpected character ${JSON.stringify(line[i])} after a closing quote (column ${i + 1})`, offset);
      }
      i += separator.length;
    } else {
      const s = line.indexOf(separator, i);
      if (s < 0) {
        fields.push(line.slice(i));
        return fields;
      }
      fields.push(line.slice(i, s));
      i = s + separator.length;
    }
  }
};
