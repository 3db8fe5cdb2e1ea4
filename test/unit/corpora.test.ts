/**
 * The offline corpus readers: SWORD zText modules (a module written here in the layout osis2mod produces)
 * and dictd databases; damaged files give one-line errors, missing packages name their install command.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { findSwordModule, swordChapters, osisToText } from "../../src/data/sword.ts";
import { dictdDocs, dictdNumber } from "../../src/data/dictd.ts";
import { openSource, type Document } from "../../src/data/sources.ts";
import { installHint, corpusDataset } from "../../src/data/catalogue.ts";
import { RetroError } from "../../src/util/errors.ts";

type Book = { id: string; chapters: string[][] };

/** Write a zText testament the way osis2mod lays it out: one zlib block per book. */
function writeTestament(dir: string, t: "ot" | "nt", books: Book[]): void {
  const slots: { block: number; text: string }[] = [
    { block: 0, text: "" },
    { block: 0, text: '<milestone type="x-importer"/>' },
  ];
  books.forEach((b, bi) => {
    slots.push({
      block: bi,
      text:
        `<div canonical="true" osisID="${b.id}" sID="g${bi}" type="book"/> <title type="main">The Book of ` +
        `${b.id}</title>`,
    });
    b.chapters.forEach((verses, ci) => {
      slots.push({ block: bi, text: `<chapter n="${ci + 1}" osisID="${b.id}.${ci + 1}" sID="${b.id}.${ci + 1}"/> ` });
      verses.forEach((v, vi) => {
        let text = v;
        if (vi === verses.length - 1) text += ` <chapter eID="${b.id}.${ci + 1}"/>`;
        if (vi === verses.length - 1 && ci === b.chapters.length - 1)
          text += ` <div eID="g${bi}" osisID="${b.id}" type="book"/>`;
        slots.push({ block: bi, text: v === "" ? "" : text });
      });
    });
  });
  const blocks: Buffer[] = books.map(() => Buffer.alloc(0));
  const bzv = Buffer.alloc(slots.length * 10);
  slots.forEach((s, i) => {
    const bytes = Buffer.from(s.text, "utf8");
    bzv.writeUInt32LE(s.block, i * 10);
    bzv.writeUInt32LE(blocks[s.block].length, i * 10 + 4);
    bzv.writeUInt16LE(bytes.length, i * 10 + 8);
    blocks[s.block] = Buffer.concat([blocks[s.block], bytes]);
  });
  const bzs = Buffer.alloc(blocks.length * 12);
  const zs: Buffer[] = [];
  let off = 0;
  blocks.forEach((b, i) => {
    const z = zlib.deflateSync(b);
    bzs.writeUInt32LE(off, i * 12);
    bzs.writeUInt32LE(z.length, i * 12 + 4);
    bzs.writeUInt32LE(b.length, i * 12 + 8);
    zs.push(z);
    off += z.length;
  });
  fs.writeFileSync(path.join(dir, `${t}.bzs`), bzs);
  fs.writeFileSync(path.join(dir, `${t}.bzv`), bzv);
  fs.writeFileSync(path.join(dir, `${t}.bzz`), Buffer.concat(zs));
}

function makeModule(root: string): string {
  const data = path.join(root, "modules", "texts", "ztext", "testmod");
  fs.mkdirSync(data, { recursive: true });
  fs.mkdirSync(path.join(root, "mods.d"), { recursive: true });
  fs.writeFileSync(
    path.join(root, "mods.d", "testmod.conf"),
    "[TestMod]\nDataPath=./modules/texts/ztext/testmod/\nModDrv=zText\nCompressType=ZIP\nSourceType=OSIS\n",
  );
  writeTestament(data, "ot", [
    {
      id: "Gen",
      chapters: [
        ['In the <w lemma="strong:H7225">beginning</w> God created.', "And the earth &amp; the sea."],
        ["¶ Thus the heavens were finished."],
      ],
    },
    { id: "Exod", chapters: [["Now these are the names.", "", "Joseph was in Egypt."]] },
  ]);
  writeTestament(data, "nt", [
    { id: "John", chapters: [['his only born<note placement="foot">a footnote</note><w>Son</w>, and<note>x</note>.']] },
  ]);
  return data;
}

test("SWORD: chapters and verses of a zText module, markup stripped, notes and headings dropped", () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "sword-"));
  makeModule(root);
  process.env.SWORD_PATH = root;
  try {
    const mod = findSwordModule("testmod");
    assert.equal(mod.name, "TestMod");
    const ch = [...swordChapters(mod)];
    assert.deepEqual(
      ch.map((c) => c.osisID),
      ["Gen.1", "Gen.2", "Exod.1", "John.1"],
    );
    assert.deepEqual(ch[0].verses, ["In the beginning God created.", "And the earth & the sea."]);
    assert.deepEqual(ch[1].verses, ["Thus the heavens were finished."]); // the closing book milestone does not end the chapter early
    assert.deepEqual(ch[2].verses, ["Now these are the names.", "", "Joseph was in Egypt."]); // verse 2 left out, verse 3 keeps its number
    assert.deepEqual(ch[3].verses, ["his only born Son, and."]);
  } finally {
    delete process.env.SWORD_PATH;
  }
});

test("SWORD: the dataset source yields one document per chapter; the data folder can be named directly", async () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "sword-"));
  const data = makeModule(root);
  const docs: Document[] = [];
  for await (const d of openSource({ name: "b", source: "sword", path: data }, { skippedLines: 0 })) docs.push(d);
  assert.deepEqual(
    docs.map((d) => d.key),
    ["Gen.1", "Gen.2", "Exod.1", "John.1"],
  );
  assert.equal(docs[2].text, "Now these are the names.\nJoseph was in Egypt.");
});

test("SWORD: a damaged module is a one-line corrupt error, a missing one names its package", () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), "sword-"));
  const data = makeModule(root);
  const read = () => [...swordChapters({ name: "t", dir: data, conf: {} })];
  const bzz = path.join(data, "ot.bzz");
  const good = fs.readFileSync(bzz);
  const corrupt = (re: RegExp) => (e: unknown) => e instanceof RetroError && e.code === 5 && re.test(e.message);
  fs.writeFileSync(bzz, good.subarray(0, 10)); // truncated
  assert.throws(read, corrupt(/block 0 ends at byte \d+, the file has 10/));
  const flipped = Buffer.from(good);
  for (let i = 2; i < 12; i++) flipped[i] ^= 0xff; // damaged deflate stream
  fs.writeFileSync(bzz, flipped);
  assert.throws(read, corrupt(/does not decompress/));
  fs.writeFileSync(bzz, good);
  fs.appendFileSync(path.join(data, "ot.bzs"), Buffer.from([1, 2, 3]));
  assert.throws(read, corrupt(/not a multiple of 12/));
  fs.rmSync(path.join(data, "ot.bzv"));
  assert.throws(read, corrupt(/without ot\.bzv/));
  assert.throws(
    () => findSwordModule("engKJV2006ebX", installHint("sword", "engKJV2006eb")),
    (e: unknown) => e instanceof RetroError && e.code === 3 && /not found/.test(e.message),
  );
  assert.match(installHint("sword", "engKJV2006eb")!, /retro corpus install kjv .*apt-get install -y sword-text-kjv/);
  assert.deepEqual(corpusDataset("web", 0), { name: "web", source: "sword", path: "engWEB2015eb", weight: 0 });
  assert.equal(osisToText('a<note n="1">b</note>.'), "a.");
});

test("dictd: base64 numbers, entries grouped in file order, metadata skipped, damage detected", async () => {
  assert.equal(dictdNumber("A"), 0);
  assert.equal(dictdNumber("BA"), 64);
  assert.equal(dictdNumber("Ph"), 15 * 64 + 33);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dictd-"));
  const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const enc = (n: number) => {
    let s = "";
    do {
      s = B64[n % 64] + s;
      n = Math.floor(n / 64);
    } while (n > 0);
    return s;
  };
  const entries = [
    "00-database-info\nabout this dictionary\n",
    "apple\n   a fruit\n",
    "zebra\n   an animal\n",
    "mango\n   another fruit\n",
  ];
  let dict = "",
    index = "";
  const heads = ["00-database-info", "apple", "zebra", "mango"];
  entries.forEach((e, i) => {
    index += `${heads[i]}\t${enc(Buffer.byteLength(dict))}\t${enc(Buffer.byteLength(e))}\n`;
    dict += e;
  });
  index += `pomme\t${enc(Buffer.byteLength(entries[0]))}\t${enc(Buffer.byteLength(entries[1]))}\n`; // a second headword of "apple"
  fs.writeFileSync(path.join(dir, "d.index"), index);
  fs.writeFileSync(path.join(dir, "d.dict.dz"), zlib.gzipSync(dict));
  const docs: Document[] = [];
  for await (const d of dictdDocs(path.join(dir, "d"), 2)) docs.push(d);
  assert.deepEqual(docs, [
    { key: "d:apple", text: "apple\na fruit\n\nzebra\nan animal" },
    { key: "d:mango", text: "mango\nanother fruit" },
  ]);
  fs.appendFileSync(path.join(dir, "d.index"), `bad\tA\t${enc(99999)}\n`);
  await assert.rejects(
    async () => {
      for await (const _ of dictdDocs(path.join(dir, "d"))) void _;
    },
    (e: unknown) => e instanceof RetroError && e.code === 5 && /d\.index:6: entry ends at byte 99999/.test(e.message),
  );
  fs.writeFileSync(path.join(dir, "d.dict.dz"), Buffer.from("not gzip"));
  await assert.rejects(
    async () => {
      for await (const _ of dictdDocs(path.join(dir, "d"))) void _;
    },
    (e: unknown) => e instanceof RetroError && e.code === 5 && /does not decompress/.test(e.message),
  );
  await assert.rejects(
    async () => {
      for await (const _ of dictdDocs(path.join(dir, "missing"), 25, "apt-get install -y dict-x")) void _;
    },
    (e: unknown) => e instanceof RetroError && e.code === 3 && /install it: apt-get install -y dict-x/.test(e.message),
  );
});
