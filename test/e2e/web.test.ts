/**
 * The chat page at `/` of `retro serve`, driven in a real headless browser (Debian's chromium through
 * puppeteer-core): a question typed and sent, the streamed answer shown, the retrieved chunks listed beside it
 * with the words they share highlighted — checked in the DOM and in a screenshot (the highlight colour drawn in
 * the citations panel, the answer drawn in the chat column).
 * Without a browser the test is skipped, unless RETRO_REQUIRE_BROWSER=1 (CI installs chromium and sets it).
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import puppeteer, { type Browser } from "puppeteer-core";
import { decode } from "fast-png";
import { buildDatabase } from "../../src/db/build.ts";
import { Database } from "../../src/db/database.ts";
import { Retriever } from "../../src/db/retriever.ts";
import { train } from "../../src/train/trainer.ts";
import { loadModel } from "../../src/model/checkpoint.ts";
import { RetroServer } from "../../src/serve/server.ts";
import { smallConfig, tmpDir, writeTextCorpus } from "../helpers.ts";

const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser", process.env.CHROMIUM_PATH].find(
  (p) => p && fs.existsSync(p),
);
const required = process.env.RETRO_REQUIRE_BROWSER === "1";
const question =
  "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, what did " +
  "I do?";

let server: RetroServer | null = null,
  db: Database | null = null,
  browser: Browser | null = null,
  root = "",
  url = "";

before(async () => {
  if (!CHROMIUM) return;
  root = tmpDir("retro-web-");
  const dir = path.join(root, "db");
  await buildDatabase(dir, smallConfig(writeTextCorpus(path.join(root, "corpus"), 30, 1200)));
  const run = path.join(root, "retro");
  await train(run, {
    db: dir,
    model: { model: "retro", d: 32, heads: 4, layers: 2, seq: 64, k: 2, r: 32, cca_layers: [2] },
    steps: 20,
    batch: 4,
    evalEvery: 1e9,
    saveEvery: 1e9,
    evalBatches: 1,
    threads: 1,
  });
  db = new Database(dir);
  const { model } = loadModel(run);
  server = new RetroServer({
    model,
    tokenizer: db.tokenizer,
    retriever: await Retriever.open(db),
    name: "tiny-retro",
    port: 0,
    system: null,
  });
  const addr = await server.listen();
  url = `http://127.0.0.1:${addr.port}/`;
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
});

after(async () => {
  await browser?.close();
  await server?.close();
  db?.close();
});

test("web page in headless chromium: the answer and its citations, highlighted, in the DOM and on screen", {
  skip: !CHROMIUM && !required ? "no chromium (apt-get install chromium; CI sets RETRO_REQUIRE_BROWSER=1)" : false,
}, async () => {
  assert.ok(CHROMIUM, "RETRO_REQUIRE_BROWSER=1 but no chromium found (apt-get install -y chromium)");
  const page = await browser!.newPage();
  await page.setViewport({ width: 1200, height: 800 });
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url, { waitUntil: "networkidle0" });
  await page.waitForFunction(() => document.getElementById("model")!.textContent === "tiny-retro", { timeout: 10_000 });
  await page.type("#q", question);
  await page.click("form button");
  // the page replaces the citations placeholder once the stream ends
  await page.waitForSelector("#cites .cite", { timeout: 60_000 });
  const dom = await page.evaluate(() => ({
    user: document.querySelector(".turn.user")?.textContent ?? "",
    answer: document.querySelector(".turn.assistant")?.textContent ?? "",
    cites: [...document.querySelectorAll("#cites .cite")].map((c) => c.textContent ?? ""),
    marks: [...document.querySelectorAll("#cites mark")].map((m) => m.textContent ?? ""),
  }));
  assert.deepEqual(errors, []);
  assert.equal(dom.user, question);
  assert.ok(dom.answer.trim().length > 0, "an answer was streamed into the page");
  assert.ok(dom.cites.length >= 2, `citations listed: ${dom.cites.length}`);
  assert.match(dom.cites[0], /moby · document \d+ · chunk \d+ · score/);
  const ids = dom.cites.map((c) => c.match(/chunk (\d+)/)![1]);
  assert.equal(new Set(ids).size, ids.length, "each chunk listed once");
  assert.ok(dom.marks.length > 0, "the words a citation shares with the question or answer are highlighted");
  const shared = new Set((question + " " + dom.answer).toLowerCase().match(/[a-z0-9]{4,}/g));
  for (const m of dom.marks)
    assert.ok(shared.has(m.toLowerCase()), `highlighted "${m}" is not in the question or answer`);

  const shot = path.join(root, "chat.png");
  await page.screenshot({ path: shot });
  const png = decode(fs.readFileSync(shot));
  const ch = png.channels,
    W = png.width,
    H = png.height;
  let markPx = 0,
    markLeft = 0,
    inkLeft = 0;
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = (y * W + x) * ch,
        r = png.data[i],
        g = png.data[i + 1],
        b = png.data[i + 2];
      if (Math.abs(r - 0xff) <= 3 && Math.abs(g - 0xe5) <= 3 && Math.abs(b - 0x8a) <= 3)
        x >= W / 2 ? markPx++ : markLeft++;
      else if (x < W / 2 && y > 60 && r < 120 && g < 120 && b < 120) inkLeft++; // text in the chat column, below the title
    }
  }
  assert.ok(markPx > 200, `highlight colour drawn in the citations panel: ${markPx} pixels (screenshot ${shot})`);
  assert.equal(markLeft, 0, "no highlight in the chat column");
  assert.ok(inkLeft > 500, `question and answer drawn in the chat column: ${inkLeft} dark pixels (screenshot ${shot})`);

  // the keyboard, as every chat page: Shift+Enter a new line, Enter sends
  await page.type("#q", "first line");
  await page.keyboard.down("Shift");
  await page.keyboard.press("Enter");
  await page.keyboard.up("Shift");
  await page.type("#q", "second line");
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelectorAll(".turn.user").length === 2, { timeout: 10_000 });
  const second = await page.evaluate(() => [...document.querySelectorAll(".turn.user")][1].textContent ?? "");
  assert.equal(second, "first line\nsecond line");
});
