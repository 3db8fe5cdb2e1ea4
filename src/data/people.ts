/**
 * A labelled synthetic knowledge corpus: fictional people with pseudo-word names (no model can know them),
 * each with seven attributes, and biographies rendered from many paraphrased sentence forms in a shuffled order
 * (the "Physics of Language Models 3.1" construction). Facts that a model can only know by reading them.
 *
 * Three groups, drawn from one seeded generator so that no two people share a full name or a surname:
 *   A  pretraining text (several renderings per person, as separate documents) and the instruction data;
 *   B  only in the database (a retrieval-only dataset), plus one more rendering in the held-out split;
 *   C  in neither: the knowledge update, added with `retro db add`.
 * Attribute values (cities, years, employers, …) come from shared pools: a value is not a fact, a person's
 * value is. Everything is a pure function of the seed.
 *
 * Question forms: at least 10 per asked attribute are for tuning; a further set per attribute is held out of
 * tuning and used only for evaluation (`questionForms(attr, "eval")`).
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { Rng, hash32, DEFAULT_SEED } from "../util/rng.ts";
import { claimOutputFolder, writeFileAtomic, writeJsonAtomic } from "../util/fsx.ts";

export const ATTRIBUTES = [
  "birth_city",
  "birth_year",
  "university",
  "field",
  "occupation",
  "employer",
  "hobby",
] as const;
export type Attribute = (typeof ATTRIBUTES)[number];
/** the attributes that questions ask about (the hobby is biography text only) */
export const ASKED: readonly Attribute[] = [
  "birth_city",
  "birth_year",
  "university",
  "field",
  "occupation",
  "employer",
];

export interface Person {
  id: string;
  group: "A" | "B" | "C" | "D";
  first: string;
  last: string;
  name: string;
  pronoun: "he" | "she";
  attrs: Record<Attribute, string>;
}

/** One rendered biography and where each fact's value sits in it (character offsets). */
export interface Biography {
  person: string;
  rendering: number;
  text: string;
  facts: { attr: Attribute; start: number; end: number }[];
}

const CITIES = [
  "Kraków",
  "Zürich",
  "São Paulo",
  "Malmö",
  "Bogotá",
  "Córdoba",
  "Düsseldorf",
  "Gdańsk",
  "Poznań",
  "Brno",
  "Nairobi",
  "Accra",
  "Dakar",
  "Lagos",
  "Addis Ababa",
  "Kampala",
  "Lusaka",
  "Hanoi",
  "Manila",
  "Dhaka",
  "Lisbon",
  "Porto",
  "Madrid",
  "Seville",
  "Valencia",
  "Bilbao",
  "Lyon",
  "Marseille",
  "Bordeaux",
  "Toulouse",
  "Nantes",
  "Geneva",
  "Zurich",
  "Basel",
  "Milan",
  "Turin",
  "Naples",
  "Florence",
  "Bologna",
  "Genoa",
  "Vienna",
  "Graz",
  "Prague",
  "Brno",
  "Krakow",
  "Gdansk",
  "Warsaw",
  "Budapest",
  "Bratislava",
  "Ljubljana",
  "Zagreb",
  "Belgrade",
  "Sofia",
  "Bucharest",
  "Athens",
  "Thessaloniki",
  "Istanbul",
  "Ankara",
  "Izmir",
  "Cairo",
  "Alexandria",
  "Tunis",
  "Algiers",
  "Casablanca",
  "Dakar",
  "Accra",
  "Lagos",
  "Nairobi",
  "Mombasa",
  "Kampala",
  "Addis Ababa",
  "Cape Town",
  "Durban",
  "Johannesburg",
  "Lusaka",
  "Harare",
  "Luanda",
  "Beirut",
  "Amman",
  "Baghdad",
  "Tehran",
  "Tashkent",
  "Karachi",
  "Lahore",
  "Delhi",
  "Mumbai",
  "Chennai",
  "Kolkata",
  "Dhaka",
  "Colombo",
  "Kathmandu",
  "Yangon",
  "Bangkok",
  "Hanoi",
  "Manila",
  "Jakarta",
  "Surabaya",
  "Singapore",
  "Taipei",
  "Shanghai",
  "Beijing",
  "Chengdu",
  "Seoul",
  "Busan",
  "Osaka",
  "Kyoto",
  "Sapporo",
  "Perth",
  "Adelaide",
  "Brisbane",
  "Auckland",
  "Wellington",
  "Honolulu",
  "Vancouver",
  "Calgary",
  "Winnipeg",
  "Toronto",
  "Montreal",
  "Halifax",
  "Boston",
  "Chicago",
  "Denver",
  "Seattle",
  "Portland",
  "Houston",
  "Atlanta",
  "Detroit",
  "Memphis",
  "Phoenix",
  "Havana",
  "Monterrey",
  "Guadalajara",
  "Bogota",
  "Medellin",
  "Quito",
  "Lima",
  "Santiago",
  "Valparaiso",
  "Montevideo",
  "Rosario",
  "Recife",
  "Salvador",
  "Fortaleza",
  "Reykjavik",
  "Bergen",
  "Oslo",
  "Uppsala",
  "Gothenburg",
  "Aarhus",
  "Tampere",
  "Tallinn",
  "Riga",
  "Vilnius",
  "Minsk",
  "Kyiv",
  "Odesa",
  "Dublin",
  "Cork",
  "Glasgow",
  "Edinburgh",
  "Cardiff",
  "Bristol",
  "Leeds",
  "Antwerp",
  "Ghent",
  "Rotterdam",
  "Utrecht",
  "Hamburg",
  "Leipzig",
  "Dresden",
  "Cologne",
  "Munich",
  "Stuttgart",
];
const OCCUPATIONS = [
  "architect",
  "pharmacist",
  "nurse",
  "surgeon",
  "dentist",
  "veterinarian",
  "civil engineer",
  "electrician",
  "carpenter",
  "plumber",
  "chef",
  "baker",
  "librarian",
  "teacher",
  "journalist",
  "photographer",
  "translator",
  "economist",
  "accountant",
  "lawyer",
  "judge",
  "police officer",
  "firefighter",
  "pilot",
  "ship captain",
  "geologist",
  "marine biologist",
  "chemist",
  "physicist",
  "astronomer",
  "statistician",
  "software developer",
  "data analyst",
  "graphic designer",
  "tailor",
  "jeweler",
  "potter",
  "sculptor",
  "violinist",
  "composer",
  "film editor",
  "museum curator",
  "archaeologist",
  "botanist",
  "beekeeper",
  "winemaker",
  "cartographer",
  "urban planner",
  "radio host",
  "locksmith",
  "glassblower",
  "bookbinder",
  "watchmaker",
  "landscape gardener",
  "midwife",
];
const FIELDS = [
  "chemistry",
  "physics",
  "mathematics",
  "biology",
  "geology",
  "astronomy",
  "economics",
  "history",
  "philosophy",
  "linguistics",
  "music",
  "fine art",
  "architecture",
  "law",
  "medicine",
  "nursing",
  "pharmacology",
  "civil engineering",
  "mechanical engineering",
  "computer science",
  "statistics",
  "sociology",
  "psychology",
  "anthropology",
  "political science",
  "classics",
  "literature",
  "journalism",
  "agriculture",
  "forestry",
  "oceanography",
  "ecology",
  "veterinary science",
  "accounting",
  "education",
  "theology",
  "geography",
  "film studies",
];
const HOBBIES = [
  "chess",
  "sailing",
  "rock climbing",
  "birdwatching",
  "gardening",
  "painting watercolors",
  "playing the cello",
  "long-distance running",
  "fly fishing",
  "baking bread",
  "collecting stamps",
  "restoring old bicycles",
  "writing poetry",
  "amateur astronomy",
  "woodcarving",
  "swimming in cold water",
  "growing orchids",
  "knitting",
  "playing the accordion",
  "cycling",
  "hiking in the mountains",
  "origami",
  "photographing bridges",
  "kayaking",
];
const EMPLOYER_KINDS = [
  "Health",
  "Aviation",
  "Freight",
  "Media",
  "Holdings",
  "Consulting",
  "Software",
  "Chemicals",
  "Mining",
  "Hotels",
  "Railways",
  "Dairy",
  "Works",
  "Transport",
  "Bakery",
  "Partners",
  "Analytics",
  "Orchestra",
  "Theatre",
  "Archive",
  "Industries",
  "Laboratories",
  "Group",
  "Systems",
  "Foods",
  "Bank",
  "Press",
  "Motors",
  "Pharmaceuticals",
  "Logistics",
  "Shipping",
  "Textiles",
  "Records",
  "Studios",
  "Hospital",
  "Insurance",
  "Engineering",
  "Airlines",
  "Robotics",
  "Publishing",
  "Museum",
  "Observatory",
  "Architects",
  "Energy",
  "Telecom",
  "Brewery",
  "Foundation",
  "Clinic",
];
const UNIVERSITY_FORMS = [
  "the University of {c}",
  "{p} University",
  "{p} College",
  "{p} Institute of Technology",
  "the {c} School of Arts",
  "{p} Polytechnic",
];

/** names: onsets, vowels and codas giving pronounceable pseudo-words ("Valdrin", "Oskemar") */
const ONSETS = [
  "b",
  "br",
  "d",
  "dr",
  "f",
  "g",
  "gr",
  "h",
  "j",
  "k",
  "kr",
  "l",
  "m",
  "n",
  "p",
  "pr",
  "r",
  "s",
  "st",
  "t",
  "tr",
  "v",
  "z",
  "sk",
  "th",
  "ch",
];
const VOWELS = ["a", "e", "i", "o", "u", "ai", "ei", "ou", "y"];
const CODAS = ["", "", "", "n", "r", "l", "s", "m", "th", "x", "nd", "rk", "st"];

function pseudoName(rng: Rng, syllables: number): string {
  let w = "";
  for (let i = 0; i < syllables; i++)
    w +=
      ONSETS[rng.int(ONSETS.length)] +
      VOWELS[rng.int(VOWELS.length)] +
      (i === syllables - 1 || rng.next() < 0.3 ? CODAS[rng.int(CODAS.length)] : "");
  return w[0].toUpperCase() + w.slice(1);
}

const pick = <T>(rng: Rng, l: readonly T[]): T => l[rng.int(l.length)];

function shuffle<T>(rng: Rng, l: T[]): T[] {
  for (let i = l.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [l[i], l[j]] = [l[j], l[i]];
  }
  return l;
}

/** The pools a corpus draws values from (employers and universities are made from pseudo-words too). */
export interface Pools {
  birth_city: string[];
  birth_year: string[];
  university: string[];
  field: string[];
  occupation: string[];
  employer: string[];
  hobby: string[];
}

function makePools(rng: Rng, taken: Set<string>): Pools {
  const fresh = (syll: number) => {
    for (;;) {
      const w = pseudoName(rng, syll);
      if (!taken.has(w.toLowerCase())) return (taken.add(w.toLowerCase()), w);
    }
  };
  const employer = Array.from({ length: 400 }, () => `${fresh(2 + rng.int(2))} ${pick(rng, EMPLOYER_KINDS)}`);
  const university = Array.from({ length: 80 }, () =>
    pick(rng, UNIVERSITY_FORMS)
      .replace("{c}", pick(rng, CITIES))
      .replace("{p}", fresh(2 + rng.int(2))),
  );
  const years: string[] = [];
  for (let y = 1930; y <= 2004; y++) years.push(String(y));
  return {
    birth_city: [...CITIES],
    birth_year: years,
    university: [...new Set(university)],
    field: [...FIELDS],
    occupation: [...OCCUPATIONS],
    employer: [...new Set(employer)],
    hobby: [...HOBBIES],
  };
}

// ---- biography sentence forms: {N} the subject (name, surname or pronoun), {n} the same mid-sentence, {S} its
// possessive, {o} as an object, {h} his/her, {p} he/she, {V} the value (occupations take "a"/"an" before it) ----
const SENTENCES: Record<Attribute, string[]> = {
  birth_city: [
    "{N} was born in {V}.",
    "{N} was born in the city of {V}.",
    "{N} is a native of {V}.",
    "{N} came into the world in {V}.",
    "{N} grew up in {V}, the city of {h} birth.",
    "{S} birthplace is {V}.",
    "{N} first saw the light of day in {V}.",
    "{N} hails from {V}, where {p} was born.",
    "The city of {V} is where {n} was born.",
    "{S} hometown is {V}.",
  ],
  birth_year: [
    "{N} was born in {V}.",
    "{N} was born in the year {V}.",
    "{S} year of birth is {V}.",
    "{N} came into the world in {V}.",
    "{N} was born in the spring of {V}.",
    "In {V}, {n} was born.",
    "{S} birth year is {V}.",
    "{N} has been alive since {V}.",
    "{N} was born back in {V}.",
  ],
  university: [
    "{N} studied at {V}.",
    "{N} graduated from {V}.",
    "{N} earned a degree at {V}.",
    "{N} attended {V}.",
    "{N} is an alumnus of {V}.",
    "{S} alma mater is {V}.",
    "{N} received {h} education at {V}.",
    "{N} spent four years as a student at {V}.",
    "{N} holds a diploma from {V}.",
  ],
  field: [
    "{N} majored in {V}.",
    "{N} studied {V}.",
    "{S} degree is in {V}.",
    "{N} specialized in {V} as a student.",
    "{N} chose {V} as {h} major.",
    "{N} wrote a thesis in {V}.",
    "{N} trained in the field of {V}.",
    "{S} field of study was {V}.",
    "{N} has a background in {V}.",
  ],
  occupation: [
    "{N} works as {a} {V}.",
    "{N} is {a} {V} by profession.",
    "{N} earns a living as {a} {V}.",
    "{S} job is {V}.",
    "{N} has a career as {a} {V}.",
    "{N} is employed as {a} {V}.",
    "By trade, {n} is {a} {V}.",
    "{N} makes a living as {a} {V}.",
    "{S} occupation is {V}.",
    "{N} practices as {a} {V}.",
  ],
  employer: [
    "{N} works for {V}.",
    "{N} is employed by {V}.",
    "{S} employer is {V}.",
    "{N} has a job at {V}.",
    "{N} works at {V}.",
    "{N} draws a salary from {V}.",
    "{V} employs {o}.",
    "{N} is on the staff of {V}.",
    "{N} joined {V} and still works there.",
    "{N} holds a position at {V}.",
  ],
  hobby: [
    "In {h} spare time, {n} enjoys {V}.",
    "{N} is fond of {V}.",
    "{S} favorite pastime is {V}.",
    "On weekends {n} loves {V}.",
    "{N} relaxes with {V}.",
    "Friends know {o} for a passion for {V}.",
    "{N} spends free evenings on {V}.",
    "{S} hobby is {V}.",
  ],
};

/** sentence forms per attribute (the biography's paraphrases) */
export function sentenceForms(attr: Attribute): readonly string[] {
  return SENTENCES[attr];
}

/**
 * Sentences that state two facts at once ({A}: the pair's first attribute, {B}: its second), so that a reader
 * must tell two values apart inside one sentence, in either order: the wording of real biographies, where one
 * attribute per sentence is the exception.
 */
const PAIRS: { a: Attribute; b: Attribute; forms: string[] }[] = [
  {
    a: "birth_city",
    b: "birth_year",
    forms: [
      "{N} was born in {A} in {B}.",
      "{N} was born in {B} in {A}.",
      "{S} birthplace is {A}, and {h} birth year is {B}.",
      "In {B}, {n} was born in the city of {A}.",
      "{N} is a native of {A}, born there in {B}.",
      "{N} came into the world in {A} in the year {B}.",
      "A native of {A}, {n} was born in {B}.",
    ],
  },
  {
    a: "university",
    b: "field",
    forms: [
      "{N} studied {B} at {A}.",
      "{N} earned a degree in {B} from {A}.",
      "{N} majored in {B} at {A}.",
      "At {A}, {n} specialized in {B}.",
      "{N} graduated from {A} with a degree in {B}.",
      "{N} is an alumnus of {A}, where {p} majored in {B}.",
    ],
  },
  {
    a: "occupation",
    b: "employer",
    forms: [
      "{N} works as {a} {A} at {B}.",
      "{N} is {a} {A} employed by {B}.",
      "{N} is {a} {A} for {B}.",
      "At {B}, {n} works as {a} {A}.",
      "{N} has a job as {a} {A} with {B}.",
      "{B} employs {o} as {a} {A}.",
    ],
  },
];
/** share of a pair's two facts told in one sentence (when the first of them comes up) */
const PAIR_SHARE = 0.4;

/** the pair sentence forms (two facts in one sentence) */
export function pairSentenceForms(): readonly { a: Attribute; b: Attribute; forms: readonly string[] }[] {
  return PAIRS;
}

/**
 * One biography of `p`: every attribute's sentence in a shuffled order, each in one of its forms (at least 8
 * per attribute); in a share of cases two related facts (birth city and year, university and field, occupation
 * and employer) share one sentence. The subject of a sentence is the full name (always in the first sentence),
 * the surname, or the pronoun, with no two pronoun subjects in a row, so every stretch of a few sentences names
 * the person.
 */
export function renderBiography(p: Person, rng: Rng, rendering: number, paraphrase = 1): Biography {
  // the person's own sentence form per attribute (a pure function of the person: every rendering agrees on it)
  const own = new Rng(hash32(`forms:${p.id}`));
  const ownForm = Object.fromEntries(ATTRIBUTES.map((a) => [a, own.int(SENTENCES[a].length)])) as Record<
    Attribute,
    number
  >;
  const order = shuffle(rng, [...ATTRIBUTES]);
  const his = p.pronoun === "he" ? "his" : "her",
    him = p.pronoun === "he" ? "him" : "her";
  let text = "";
  const facts: Biography["facts"] = [];
  let lastWasPronoun = true;
  const told = new Set<Attribute>();
  let i = 0;
  for (const attr of order) {
    if (told.has(attr)) continue;
    const u = rng.next();
    const ref: string = i++ === 0 ? p.name : lastWasPronoun || u < 0.45 ? p.name : u < 0.7 ? p.last : p.pronoun;
    const pron: boolean = ref === p.pronoun;
    lastWasPronoun = pron;
    const pair = PAIRS.find((x) => x.a === attr || x.b === attr);
    const both = pair && !told.has(pair.a === attr ? pair.b : pair.a) && rng.next() < PAIR_SHARE;
    // the value slots of the sentence: {V} alone, or {A} and {B} of a pair
    const slots: [string, Attribute][] = both
      ? [
          ["A", pair.a],
          ["B", pair.b],
        ]
      : [["V", attr]];
    const occupation = both ? pair.a : attr; // the value "a"/"an" goes before (an occupation's)
    const fill: Record<string, string> = {
      N: ref,
      n: ref,
      S: pron ? his : `${ref}'s`,
      o: pron ? him : ref,
      h: his,
      p: p.pronoun,
      a: /^[aeiou]/i.test(p.attrs[occupation]) ? "an" : "a",
    };
    let form: string;
    if (both) form = pick(rng, pair.forms);
    else {
      const fresh = rng.next() < paraphrase;
      const k = rng.int(SENTENCES[attr].length);
      form = SENTENCES[attr][fresh ? k : ownForm[attr]];
    }
    form = form.replace(/\{([NnSohpa])\}/g, (_, k: string) => fill[k]);
    // the values go in left to right, each fact's span measured where it lands
    let sentence = "";
    const spans: Biography["facts"] = [];
    for (const part of form.split(/(\{[VAB]\})/)) {
      const slot = slots.find(([name]) => part === `{${name}}`);
      if (!slot) {
        sentence += part;
        continue;
      }
      const v = p.attrs[slot[1]];
      spans.push({ attr: slot[1], start: sentence.length, end: sentence.length + v.length });
      sentence += v;
    }
    sentence = sentence[0].toUpperCase() + sentence.slice(1);
    const at = text.length + (text ? 1 : 0);
    text += (text ? " " : "") + sentence;
    for (const f of spans) facts.push({ attr: f.attr, start: at + f.start, end: at + f.end });
    for (const [, a] of slots) told.add(a);
  }
  return { person: p.id, rendering, text, facts };
}

/** the profile card's field names */
const CARD_KEYS: Record<Attribute, string> = {
  birth_city: "Birth city",
  birth_year: "Birth year",
  university: "University",
  field: "Field of study",
  occupation: "Occupation",
  employer: "Employer",
  hobby: "Hobby",
};

// ---- question forms: the last HELD_OUT_FORMS of each list are held out for evaluation, the others tune. The 8 after
// the first 10 widen the tuning wording ("Do you know …", "Can you tell me …", "Name …"); none uses a held-out form's
// key
// word ("career", "trade", "salary", "educated", …) ----
const QUESTIONS: Record<Exclude<Attribute, "hobby">, string[]> = {
  birth_city: [
    "Where was {N} born?",
    "In which city was {N} born?",
    "What is the birthplace of {N}?",
    "What city is {N} a native of?",
    "Which city did {N} come from?",
    "{N} was born in which city?",
    "What is {N}'s hometown?",
    "Name the city where {N} was born.",
    "What city was {N} born in?",
    "Which city is the birthplace of {N}?",
    "Do you know where {N} was born?",
    "Can you tell me the birthplace of {N}?",
    "Where did {N} grow up?",
    "{N}'s birthplace is which city?",
    "What is the city of birth of {N}?",
    "Which town was {N} born in?",
    "Name {N}'s hometown.",
    "Where was {N} brought into the world?",
    // held out
    "Where is {N} originally from?",
    "In what city did {N}'s life begin?",
    "Tell me the city of {N}'s birth.",
    "From which city does {N} hail?",
  ],
  birth_year: [
    "In what year was {N} born?",
    "When was {N} born?",
    "What year was {N} born in?",
    "What is {N}'s year of birth?",
    "{N} was born in which year?",
    "Which year saw the birth of {N}?",
    "What is the birth year of {N}?",
    "In which year was {N} born?",
    "Name the year {N} was born.",
    "What year did {N} come into the world?",
    "Do you know when {N} was born?",
    "Can you tell me {N}'s birth year?",
    "{N}'s year of birth is what?",
    "Which year was {N} born in?",
    "How old is {N}? Give the year of birth.",
    "What is the year {N} was born?",
    "Name {N}'s year of birth.",
    "In what year did {N} start life?",
    // held out
    "When did {N} come into the world?",
    "Tell me the year of {N}'s birth.",
    "What was the year when {N} was born?",
    "{N} has been alive since what year?",
  ],
  university: [
    "Where did {N} study?",
    "Which university did {N} attend?",
    "What is {N}'s alma mater?",
    "Where did {N} go to college?",
    "From which school did {N} graduate?",
    "Which institution awarded {N} a degree?",
    "{N} studied at which university?",
    "What school did {N} attend?",
    "Where did {N} earn a degree?",
    "Name the university {N} graduated from.",
    "Do you know where {N} studied?",
    "Can you tell me which university {N} attended?",
    "Which college did {N} go to?",
    "{N} holds a diploma from which school?",
    "Which school gave {N} a degree?",
    "Name {N}'s alma mater.",
    "Which university did {N} graduate from?",
    "At which university did {N} earn a degree?",
    // held out
    "Which university is {N} an alumnus of?",
    "Where was {N} educated?",
    "At which school was {N} a student?",
    "What institution did {N} attend?",
  ],
  field: [
    "What did {N} study?",
    "What was {N}'s major?",
    "Which subject did {N} major in?",
    "What is {N}'s field of study?",
    "In which field does {N} hold a degree?",
    "What subject did {N} specialize in?",
    "{N} majored in what?",
    "What was {N}'s field?",
    "Which discipline did {N} study?",
    "What did {N} major in?",
    "Do you know what {N} studied?",
    "Can you tell me {N}'s major?",
    "What was the subject of {N}'s thesis?",
    "In which subject does {N} have a background?",
    "{N}'s field of study is what?",
    "Name the subject {N} majored in.",
    "Which subject did {N} study?",
    "What was {N}'s subject at university?",
    // held out
    "What is {N}'s degree in?",
    "In what subject was {N} trained?",
    "What academic field did {N} choose?",
    "Which field did {N} study at university?",
  ],
  occupation: [
    "What is {N}'s occupation?",
    "What does {N} do for a living?",
    "What is {N}'s job?",
    "What is {N}'s profession?",
    "How does {N} earn a living?",
    "What kind of work does {N} do?",
    "{N} works as what?",
    "What job does {N} have?",
    "What is the profession of {N}?",
    "What does {N} work as?",
    "Do you know what {N} does for a living?",
    "Can you tell me {N}'s job?",
    "What does {N} do?",
    "{N} is employed as what?",
    "Name {N}'s profession.",
    "What job does {N} hold?",
    "What is {N}'s job title?",
    "As what does {N} practice?",
    // held out
    "What is {N} by trade?",
    "What career does {N} have?",
    "Tell me {N}'s line of work.",
    "What is the occupation of {N}?",
  ],
  employer: [
    "Who employs {N}?",
    "Which company does {N} work for?",
    "Where does {N} work?",
    "Who is {N}'s employer?",
    "What organization employs {N}?",
    "For which company does {N} work?",
    "{N} works for which organization?",
    "Where is {N} employed?",
    "Which employer does {N} have?",
    "What company is {N} employed by?",
    "Do you know who employs {N}?",
    "Can you tell me {N}'s employer?",
    "Which company employs {N}?",
    "{N} has a job at which company?",
    "Name {N}'s employer.",
    "At which company does {N} hold a position?",
    "Which firm does {N} work at?",
    "Where does {N} have a job?",
    // held out
    "Which organization is {N} on the staff of?",
    "For whom does {N} work?",
    "What is the name of {N}'s employer?",
    "Who pays {N}'s salary?",
  ],
};

/** the last HELD_OUT_FORMS forms of each list are held out of tuning (evaluation only) */
export const HELD_OUT_FORMS = 4;
/** question forms that tune, per attribute (the same number for each) */
export const TUNING_FORMS = QUESTIONS.birth_city.length - HELD_OUT_FORMS;

export function questionForms(attr: Exclude<Attribute, "hobby">, which: "tune" | "eval"): string[] {
  const l = QUESTIONS[attr],
    cut = l.length - HELD_OUT_FORMS;
  return which === "tune" ? l.slice(0, cut) : l.slice(cut);
}

export interface PeopleQuestion {
  id: string;
  person: string;
  attr: Exclude<Attribute, "hobby">;
  question: string;
  answers: string[];
}

export function askAbout(p: Person, attr: Exclude<Attribute, "hobby">, form: string, id: string): PeopleQuestion {
  return { id, person: p.id, attr, question: form.replace("{N}", p.name), answers: [p.attrs[attr]] };
}

export interface PeopleOptions {
  seed: number;
  /** people per group */
  a: number;
  b: number;
  c: number;
  /** renderings of each A person in the pretraining text (separate documents, so one can retrieve another) */
  renderingsA: number;
  /** renderings of each B person in the database (the held-out split gets one more) */
  renderingsB: number;
  /**
   * questions appended to each A pretraining document ("Q: …\nA: …" lines about the people it describes, in
   * tuning forms only); 0 = biographies alone. Half of the documents describe two people. This is the
   * "mixed training" of Physics of Language Models 3.1: the pretraining text itself shows facts being read
   * back from the context, which a small model does not learn from instruction tuning alone.
   */
  quiz: number;
  /**
   * Share of sentences that take a fresh form in each rendering; the rest take the person's own form for that
   * attribute, the same in every rendering (two texts about one person share some phrasing). 1: every rendering
   * fully paraphrased.
   */
  paraphrase: number;
  /**
   * A profile card after each A pretraining biography ("Profile: Name\nBirth city: …" in a shuffled order): dense
   * reading in the pretraining text, every value read back from the biography above it.
   */
  card: boolean;
  /** share of single-rendering pretraining documents that describe two people (name matching) */
  twoPeople?: number;
  /**
   * People of the fitting text (D, default 0): one biography each in a dataset that pretraining does not draw
   * (the demo's GPT gives it weight 0 with its `blend`; the fits draw it) and another, retrieval-only —
   * facts a fit can lower its loss on only by reading its neighbours, as B's held-out text is. Generated after
   * everything else with their own seed, so A, B and C do not depend on it.
   */
  d?: number;
}

export const DEFAULT_PEOPLE: PeopleOptions = {
  seed: DEFAULT_SEED,
  a: 2000,
  b: 400,
  c: 200,
  renderingsA: 3,
  renderingsB: 1,
  quiz: 3,
  paraphrase: 1,
  card: true,
};

export interface PeopleCorpus {
  options: PeopleOptions;
  people: Person[];
  /** A's pretraining documents (renderings shuffled apart), B's database and held-out documents, C's documents */
  docs: { a: Biography[]; b: Biography[]; bHeldOut: Biography[]; c: Biography[]; d: Biography[]; dDb: Biography[] };
  /** A's pretraining documents: one or two biographies and, with `quiz`, questions about them answered */
  pretraining: string[];
}

/** A person: a first name and a surname no one else has, and a value of each attribute drawn from the pools. */
function drawPerson(rng: Rng, taken: Set<string>, pools: Pools, id: string, group: Person["group"]): Person {
  let first: string, last: string;
  do {
    first = pseudoName(rng, 2);
    last = pseudoName(rng, 2 + rng.int(2));
  } while (taken.has(last.toLowerCase()) || taken.has(first.toLowerCase()) || first === last);
  taken.add(last.toLowerCase());
  const attrs = {} as Record<Attribute, string>;
  for (const attr of ATTRIBUTES) attrs[attr] = pick(rng, pools[attr]);
  return { id, group, first, last, name: `${first} ${last}`, pronoun: rng.next() < 0.5 ? "he" : "she", attrs };
}

/** The whole corpus as a pure function of the options. */
export function makePeopleCorpus(o: PeopleOptions): PeopleCorpus {
  const rng = new Rng(o.seed);
  const taken = new Set<string>();
  const pools = makePools(rng, taken);
  const people: Person[] = [];
  const n = o.a + o.b + o.c;
  for (let i = 0; i < n; i++) {
    const group = i < o.a ? "A" : i < o.a + o.b ? "B" : "C";
    people.push(drawPerson(rng, taken, pools, `${group}${String(i).padStart(5, "0")}`, group));
  }
  const render = (g: "A" | "B" | "C", times: number, from = 0) =>
    people
      .filter((p) => p.group === g)
      .flatMap((p) => Array.from({ length: times }, (_, r) => renderBiography(p, rng, from + r, o.paraphrase ?? 1)));
  const a = shuffle(rng, render("A", o.renderingsA));
  const b = render("B", o.renderingsB);
  const bHeldOut = render("B", 1, o.renderingsB);
  const c = render("C", 1);
  const byId = new Map(people.map((p) => [p.id, p]));
  const quiz = (who: Person[]) => {
    const lines: string[] = [];
    const attrs = shuffle(rng, [...ASKED]) as Exclude<Attribute, "hobby">[];
    for (let q = 0; q < o.quiz; q++) {
      const p = who[rng.int(who.length)],
        attr = attrs[q % attrs.length];
      const x = askAbout(p, attr, pick(rng, questionForms(attr, "tune")), "");
      lines.push(`Q: ${x.question}\nA: ${x.answers[0]}`);
    }
    return lines.length ? `\n\n${lines.join("\n")}` : "";
  };
  const card = (who: Person[]) =>
    !o.card
      ? ""
      : who
          .map(
            (p) =>
              `\n\nProfile: ${p.name}\n` +
              shuffle(rng, [...ATTRIBUTES])
                .map((a) => `${CARD_KEYS[a]}: ${p.attrs[a]}`)
                .join("\n"),
          )
          .join("");
  // a person's first two renderings make one document (a biography and its paraphrase: the second one's facts
  // are there to be read back from the first); each further rendering is a document of its own, sometimes with
  // another person's, so that the database holds a rendering outside the document that Retro can retrieve
  const pretraining: string[] = [];
  const rest: Biography[] = [];
  const firsts = new Map<string, Biography[]>();
  for (const bio of a) {
    const l = firsts.get(bio.person) ?? [];
    if (bio.rendering < 2 && o.renderingsA >= 3) l.push(bio), firsts.set(bio.person, l);
    else rest.push(bio);
  }
  for (const [id, bios] of firsts)
    pretraining.push(bios.map((x) => x.text).join(" ") + card([byId.get(id)!]) + quiz([byId.get(id)!]));
  for (let i = 0; i < rest.length; ) {
    const two = i + 1 < rest.length && rng.next() < (o.twoPeople ?? 0.5) && rest[i + 1].person !== rest[i].person;
    const bios = rest.slice(i, i + (two ? 2 : 1));
    i += bios.length;
    const who = bios.map((x) => byId.get(x.person)!);
    pretraining.push(bios.map((x) => x.text).join(" ") + card(who) + quiz(who));
  }
  shuffle(rng, pretraining);
  // D last, from a seed of its own: a corpus with D holds the same A, B and C as one without
  const rd = new Rng(o.seed + 4);
  const dPeople: Person[] = [];
  for (let i = 0; i < (o.d ?? 0); i++)
    dPeople.push(drawPerson(rd, taken, pools, `D${String(n + i).padStart(5, "0")}`, "D"));
  people.push(...dPeople);
  const dDb = dPeople.map((p) => renderBiography(p, rd, 0, o.paraphrase ?? 1));
  const d = dPeople.map((p) => renderBiography(p, rd, 1, o.paraphrase ?? 1));
  return { options: o, people, docs: { a, b, bHeldOut, c, d, dDb }, pretraining };
}

/** Training questions about A: every asked attribute of every A person, in tuning forms drawn by the seed. */
export function tuningQuestions(corpus: PeopleCorpus, perPerson = ASKED.length): PeopleQuestion[] {
  const rng = new Rng(corpus.options.seed + 1);
  const out: PeopleQuestion[] = [];
  for (const p of corpus.people.filter((x) => x.group === "A")) {
    const attrs = shuffle(rng, [...ASKED]).slice(0, perPerson) as Exclude<Attribute, "hobby">[];
    for (const attr of attrs) out.push(askAbout(p, attr, pick(rng, questionForms(attr, "tune")), `${p.id}:${attr}`));
  }
  return shuffle(rng, out);
}

/** Evaluation questions about a group, in the held-out forms: one per person and asked attribute. */
export function evalQuestions(
  corpus: PeopleCorpus,
  group: "B" | "C",
  attrs: readonly Attribute[] = ASKED,
): PeopleQuestion[] {
  const rng = new Rng(corpus.options.seed + (group === "B" ? 2 : 3));
  const out: PeopleQuestion[] = [];
  for (const p of corpus.people.filter((x) => x.group === group)) {
    for (const attr of attrs as Exclude<Attribute, "hobby">[])
      out.push(askAbout(p, attr, pick(rng, questionForms(attr, "eval")), `${p.id}:${attr}`));
  }
  return out;
}

export interface PeopleFiles {
  dir: string;
  /** A's pretraining text, B's database text, B's held-out renderings, C's update: JSONL of {id, text} */
  a: string;
  b: string;
  bHeldOut: string;
  c: string;
  /** D's fitting text and D's database text (absent without D) */
  d?: string;
  dDb?: string;
  /** every person and attribute (the ground truth), and each rendering's fact spans */
  people: string;
  facts: string;
}

/** Write the corpus to `dir` (atomically, file by file) with a README that labels it synthetic. */
export function writePeopleCorpus(
  dir: string,
  o: PeopleOptions = DEFAULT_PEOPLE,
): { files: PeopleFiles; corpus: PeopleCorpus } {
  const corpus = makePeopleCorpus(o);
  claimOutputFolder(dir, {
    marker: ".retro-corpus",
    command: "retro corpus people",
    writes: [
      "README.md",
      "people-a.jsonl",
      "people-b.jsonl",
      "people-b-heldout.jsonl",
      "people-c.jsonl",
      "people-d.jsonl",
      "people-d-db.jsonl",
    ],
    legacy: ["people.json", "facts.json"],
  });
  const files: PeopleFiles = {
    dir,
    a: path.join(dir, "people-a.jsonl"),
    b: path.join(dir, "people-b.jsonl"),
    bHeldOut: path.join(dir, "people-b-heldout.jsonl"),
    c: path.join(dir, "people-c.jsonl"),
    people: path.join(dir, "people.json"),
    facts: path.join(dir, "facts.json"),
  };
  if (o.d) {
    files.d = path.join(dir, "people-d.jsonl");
    files.dDb = path.join(dir, "people-d-db.jsonl");
  }
  const jsonl = (docs: Biography[]) =>
    docs.map((d) => JSON.stringify({ id: `${d.person}.${d.rendering}`, text: d.text })).join("\n") + "\n";
  writeFileAtomic(
    files.a,
    corpus.pretraining.map((text, i) => JSON.stringify({ id: `A.${i}`, text })).join("\n") + "\n",
  );
  writeFileAtomic(files.b, jsonl(corpus.docs.b));
  writeFileAtomic(files.bHeldOut, jsonl(corpus.docs.bHeldOut));
  writeFileAtomic(files.c, jsonl(corpus.docs.c));
  if (files.d && files.dDb) {
    writeFileAtomic(files.d, jsonl(corpus.docs.d));
    writeFileAtomic(files.dDb, jsonl(corpus.docs.dDb));
  } else for (const f of ["people-d.jsonl", "people-d-db.jsonl"]) fs.rmSync(path.join(dir, f), { force: true });
  writeJsonAtomic(files.people, { options: o, people: corpus.people });
  writeJsonAtomic(
    files.facts,
    [...corpus.docs.bHeldOut].map((d) => ({ id: `${d.person}.${d.rendering}`, facts: d.facts })),
  );
  writeFileAtomic(
    path.join(dir, "README.md"),
    [
      "# People: a labelled synthetic knowledge corpus",
      "",
      "**Synthetic.** Every person here is fictional: names are generated pseudo-words, attributes are drawn at random",
      `from fixed pools (src/data/people.ts, seed ${o.seed}). Nothing in these files is a fact about the world.`,
      "",
      `- people-a.jsonl: group A, ${o.a} people × ${o.renderingsA} biographies (pretraining text; the instruction ` +
        `data asks about them);`,
      o.quiz
        ? `  documents of one or two biographies followed by ${o.quiz} questions about them, answered ` +
          `("Q: …" / "A: …", tuning forms)`
        : "  one biography per document",
      `- people-b.jsonl: group B, ${o.b} people × ${o.renderingsB} biographies (retrieval-only: in the database, ` +
        `never trained on)`,
      `- people-b-heldout.jsonl: one more biography of each B person (the held-out split: perplexity)`,
      `- people-c.jsonl: group C, ${o.c} people (in neither: added with \`retro db add\` as a knowledge update)`,
      ...(o.d
        ? [
            `- people-d.jsonl: group D, ${o.d} people × 1 biography (fitting text: not drawn by pretraining, ` +
              `a Retro-fit trains on it), people-d-db.jsonl: another biography of each (retrieval-only)`,
          ]
        : []),
      "- people.json: every person and attribute; facts.json: where each fact sits in each held-out biography",
      "",
      `Attributes: ${ATTRIBUTES.join(", ")}; questions ask about ${ASKED.join(", ")}, in ${TUNING_FORMS} tuning ` +
        `forms per attribute`,
      "and further forms held out of tuning for evaluation.",
      "",
    ].join("\n"),
  );
  return { files, corpus };
}
