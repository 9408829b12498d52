// Fact families of the lema-reply builder. Facts are kept short (one
// sentence of explanation) so that a small model can learn them, and
// correct: where sources disagree or a figure is an estimate the
// confidence is Medium; where the answer cannot be known it is Low.
#include <cctype>

#include "common/data/lema_reply/lema_reply_families.h"

namespace lema {

std::vector<Family> lema_reply_computed_families();  // lema_reply_computed.cpp

namespace {

constexpr Confidence H = Confidence::kHigh;
constexpr Confidence M = Confidence::kMedium;
constexpr Confidence L = Confidence::kLow;

std::string cap(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

// Replaces every "{}" in `tmpl` with `x`.
std::string fill(const std::string& tmpl, const std::string& x) {
  std::string out = tmpl;
  for (size_t p = out.find("{}"); p != std::string::npos; p = out.find("{}", p + x.size())) out.replace(p, 2, x);
  return out;
}

Family fact_family(std::string name, std::string category) {
  Family f;
  f.name = std::move(name);
  f.category = std::move(category);
  return f;
}

// A fact asked several ways: every question variant gets the same reply.
struct Fact {
  std::vector<std::string> questions;
  std::string answer;
  std::string explanation;
  Confidence confidence;
};

Family from_facts(std::string name, std::string category, const std::vector<Fact>& facts) {
  Family f = fact_family(std::move(name), std::move(category));
  for (const auto& fact : facts)
    for (const auto& q : fact.questions) f.items.push_back({q, fact.answer, fact.explanation, fact.confidence});
  return f;
}

// ---------------------------------------------------------------- geography

struct Country {
  const char* name;  // as used mid-sentence ("the United States")
  const char* capital;
  const char* continent;
};

const Country kCountries[] = {
    {"France", "Paris", "Europe"}, {"Germany", "Berlin", "Europe"}, {"Italy", "Rome", "Europe"},
    {"Spain", "Madrid", "Europe"}, {"Portugal", "Lisbon", "Europe"}, {"the United Kingdom", "London", "Europe"},
    {"Ireland", "Dublin", "Europe"}, {"Belgium", "Brussels", "Europe"}, {"Austria", "Vienna", "Europe"},
    {"Poland", "Warsaw", "Europe"}, {"the Czech Republic", "Prague", "Europe"}, {"Hungary", "Budapest", "Europe"},
    {"Greece", "Athens", "Europe"}, {"Sweden", "Stockholm", "Europe"}, {"Norway", "Oslo", "Europe"},
    {"Denmark", "Copenhagen", "Europe"}, {"Finland", "Helsinki", "Europe"}, {"Iceland", "Reykjavik", "Europe"},
    {"Ukraine", "Kyiv", "Europe"}, {"Romania", "Bucharest", "Europe"}, {"Bulgaria", "Sofia", "Europe"},
    {"Serbia", "Belgrade", "Europe"}, {"Croatia", "Zagreb", "Europe"}, {"Russia", "Moscow", "Europe and Asia"},
    {"Turkey", "Ankara", "Europe and Asia"}, {"Egypt", "Cairo", "Africa"}, {"Kenya", "Nairobi", "Africa"},
    {"Nigeria", "Abuja", "Africa"}, {"Ethiopia", "Addis Ababa", "Africa"}, {"Morocco", "Rabat", "Africa"},
    {"Ghana", "Accra", "Africa"}, {"Senegal", "Dakar", "Africa"}, {"Japan", "Tokyo", "Asia"},
    {"China", "Beijing", "Asia"}, {"South Korea", "Seoul", "Asia"}, {"India", "New Delhi", "Asia"},
    {"Pakistan", "Islamabad", "Asia"}, {"Bangladesh", "Dhaka", "Asia"}, {"Thailand", "Bangkok", "Asia"},
    {"Vietnam", "Hanoi", "Asia"}, {"the Philippines", "Manila", "Asia"}, {"Malaysia", "Kuala Lumpur", "Asia"},
    {"Iran", "Tehran", "Asia"}, {"Iraq", "Baghdad", "Asia"}, {"Saudi Arabia", "Riyadh", "Asia"},
    {"Nepal", "Kathmandu", "Asia"}, {"Mongolia", "Ulaanbaatar", "Asia"}, {"Australia", "Canberra", "Oceania"},
    {"New Zealand", "Wellington", "Oceania"}, {"Canada", "Ottawa", "North America"},
    {"the United States", "Washington, D.C.", "North America"}, {"Mexico", "Mexico City", "North America"},
    {"Cuba", "Havana", "North America"}, {"Jamaica", "Kingston", "North America"},
    {"Brazil", "Brasilia", "South America"}, {"Argentina", "Buenos Aires", "South America"},
    {"Chile", "Santiago", "South America"}, {"Peru", "Lima", "South America"},
    {"Colombia", "Bogota", "South America"}, {"Venezuela", "Caracas", "South America"},
    {"Ecuador", "Quito", "South America"}, {"Uruguay", "Montevideo", "South America"},
};

std::vector<Family> geography() {
  std::vector<Family> out;
  Family capitals = fact_family("capital", "geography");
  Family reverse = fact_family("capital_of", "geography");
  Family continents = fact_family("continent", "geography");
  for (const auto& c : kCountries) {
    std::string expl = std::string(c.capital) + " is the capital of " + c.name + ".";
    for (const char* t : {"What is the capital of {}?", "Which city is the capital of {}?",
                          "What is the capital city of {}?"})
      capitals.items.push_back({fill(t, c.name), c.capital, expl, H});
    reverse.items.push_back({std::string(c.capital) + " is the capital of which country?", cap(c.name), expl, H});
    std::string cont_expl = std::string(c.continent).find(" and ") != std::string::npos
                                ? cap(c.name) + " spans both Europe and Asia."
                                : cap(c.name) + " is in " + c.continent + ".";
    for (const char* t : {"On which continent is {}?", "Which continent is {} in?"})
      continents.items.push_back({fill(t, c.name), c.continent, cont_expl, H});
  }
  out.push_back(std::move(capitals));
  out.push_back(std::move(reverse));
  out.push_back(std::move(continents));

  struct River { const char* city; const char* river; };
  const River rivers[] = {{"Paris", "the Seine"}, {"London", "the Thames"}, {"Cairo", "the Nile"},
                          {"Budapest", "the Danube"}, {"Vienna", "the Danube"}, {"Rome", "the Tiber"},
                          {"Baghdad", "the Tigris"}, {"Prague", "the Vltava"}, {"Warsaw", "the Vistula"},
                          {"Lisbon", "the Tagus"}, {"Berlin", "the Spree"}, {"Dublin", "the Liffey"},
                          {"Florence", "the Arno"}, {"Moscow", "the Moskva"}};
  Family rv = fact_family("river", "geography");
  for (const auto& r : rivers)
    for (const char* t : {"Which river flows through {}?", "What river runs through {}?"})
      rv.items.push_back({fill(t, r.city), cap(r.river), cap(r.river) + " flows through " + r.city + ".", H});
  out.push_back(std::move(rv));

  out.push_back(from_facts("geo_facts", "geography", {
      {{"What is the largest ocean on Earth?", "Which ocean is the biggest?"}, "The Pacific Ocean",
       "The Pacific covers about a third of Earth's surface.", H},
      {{"What is the highest mountain in the world?", "Which mountain is the tallest above sea level?"},
       "Mount Everest", "Everest rises about 8,849 metres above sea level.", H},
      {{"What is the largest country by area?", "Which country covers the most land?"}, "Russia",
       "Russia covers about 17 million square kilometres.", H},
      {{"What is the smallest country in the world?", "Which country is the smallest by area?"}, "Vatican City",
       "Vatican City covers less than half a square kilometre.", H},
      {{"What is the largest continent?", "Which continent is the biggest?"}, "Asia",
       "Asia has the most land and the most people of any continent.", H},
      {{"What is the longest river in the world?", "Which river is the longest on Earth?"}, "The Nile",
       "The Nile is usually ranked first, but some measurements make the Amazon longer.", M},
      {{"What is the largest desert in the world?", "Which desert is the biggest?"}, "Antarctica",
       "Counting cold deserts Antarctica is largest; the Sahara is the largest hot desert.", M},
      {{"How many continents are there?", "How many continents does Earth have?"}, "Seven",
       "Seven is the most common count, but some traditions count five or six.", M},
      {{"Which country has the most people?", "What is the most populous country?"}, "India",
       "UN estimates put India ahead of China from about 2023.", M},
      {{"How many people live on Earth?", "What is the world population?"}, "About 8 billion",
       "The UN estimated that the world passed 8 billion people in 2022.", M},
  }));

  Family pop = fact_family("future_population", "geography");
  const char* pop_countries[] = {"France", "Japan", "Brazil", "Nigeria", "India", "Canada", "Egypt",
                                 "Mexico", "Germany", "Kenya", "Australia", "Peru"};
  for (const char* c : pop_countries)
    for (const char* year : {"2080", "2100", "2150"})
      pop.items.push_back({std::string("What will the population of ") + c + " be in " + year + "?",
                           "It cannot be known yet",
                           std::string("Projections for ") + year + " depend on future births, deaths and migration.",
                           L});
  out.push_back(std::move(pop));
  return out;
}

// ---------------------------------------------------------------- science

struct Element {
  const char* name;
  const char* symbol;
  int number;
};

const Element kElements[] = {
    {"hydrogen", "H", 1},   {"helium", "He", 2},    {"lithium", "Li", 3},    {"beryllium", "Be", 4},
    {"boron", "B", 5},      {"carbon", "C", 6},     {"nitrogen", "N", 7},    {"oxygen", "O", 8},
    {"fluorine", "F", 9},   {"neon", "Ne", 10},     {"sodium", "Na", 11},    {"magnesium", "Mg", 12},
    {"aluminium", "Al", 13}, {"silicon", "Si", 14}, {"phosphorus", "P", 15}, {"sulfur", "S", 16},
    {"chlorine", "Cl", 17}, {"argon", "Ar", 18},    {"potassium", "K", 19},  {"calcium", "Ca", 20},
    {"titanium", "Ti", 22}, {"chromium", "Cr", 24}, {"manganese", "Mn", 25}, {"iron", "Fe", 26},
    {"cobalt", "Co", 27},   {"nickel", "Ni", 28},   {"copper", "Cu", 29},    {"zinc", "Zn", 30},
    {"bromine", "Br", 35},  {"krypton", "Kr", 36},  {"silver", "Ag", 47},    {"tin", "Sn", 50},
    {"iodine", "I", 53},    {"xenon", "Xe", 54},    {"tungsten", "W", 74},   {"platinum", "Pt", 78},
    {"gold", "Au", 79},     {"mercury", "Hg", 80},  {"lead", "Pb", 82},      {"uranium", "U", 92},
};

const char* kOrdinals[] = {"", "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth",
                           "ninth", "tenth", "eleventh", "twelfth"};

std::vector<Family> science() {
  std::vector<Family> out;
  Family sym = fact_family("element_symbol", "science");
  Family num = fact_family("element_number", "science");
  for (const auto& e : kElements) {
    std::string s_expl = cap(e.name) + " has the chemical symbol " + e.symbol + ".";
    sym.items.push_back({fill("What is the chemical symbol for {}?", e.name), e.symbol, s_expl, H});
    sym.items.push_back({fill("Which element has the symbol {}?", e.symbol), cap(e.name), s_expl, H});
    std::string n = std::to_string(e.number);
    std::string n_expl = cap(e.name) + " has " + n + (e.number == 1 ? " proton" : " protons") + " in its nucleus.";
    num.items.push_back({fill("What is the atomic number of {}?", e.name), n, n_expl, H});
    num.items.push_back({fill("Which element has atomic number {}?", n), cap(e.name), n_expl, H});
  }
  out.push_back(std::move(sym));
  out.push_back(std::move(num));

  const char* planets[] = {"", "Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"};
  Family pl = fact_family("planet_order", "science");
  for (int i = 1; i <= 8; ++i) {
    std::string expl = std::string(planets[i]) + " is the " + kOrdinals[i] + " planet from the Sun.";
    pl.items.push_back({std::string("Which planet is ") + kOrdinals[i] + " from the Sun?", planets[i], expl, H});
    pl.items.push_back({std::string("What position is ") + planets[i] + " from the Sun?", cap(kOrdinals[i]), expl, H});
  }
  out.push_back(std::move(pl));

  out.push_back(from_facts("science_facts", "science", {
      {{"What is the largest planet in the solar system?", "Which planet is the biggest?"}, "Jupiter",
       "Jupiter is more massive than all the other planets combined.", H},
      {{"What is the smallest planet in the solar system?", "Which planet is the smallest?"}, "Mercury",
       "Mercury is the smallest of the eight planets.", H},
      {{"Which planet is the hottest?", "What is the hottest planet in the solar system?"}, "Venus",
       "Its thick carbon dioxide atmosphere traps heat.", H},
      {{"Which planet is called the Red Planet?", "What is known as the Red Planet?"}, "Mars",
       "Iron oxide dust makes the surface of Mars look red.", H},
      {{"At what temperature does water boil at sea level?", "What is the boiling point of water?"},
       "100 degrees Celsius", "At sea-level pressure pure water boils at 100 degrees Celsius.", H},
      {{"At what temperature does water freeze?", "What is the freezing point of water?"}, "0 degrees Celsius",
       "At normal pressure pure water freezes at 0 degrees Celsius.", H},
      {{"What is the chemical formula of water?", "What is water's chemical formula?"}, "H2O",
       "A water molecule has two hydrogen atoms and one oxygen atom.", H},
      {{"What is the chemical formula of table salt?", "What is table salt made of?"}, "NaCl",
       "Table salt is sodium chloride.", H},
      {{"How many bones does an adult human have?", "How many bones are in the adult human body?"}, "206",
       "Babies have more bones; some fuse as they grow.", H},
      {{"How many chambers does the human heart have?", "How many chambers are in a human heart?"}, "Four",
       "The heart has two atria and two ventricles.", H},
      {{"What gas do plants absorb from the air?", "Which gas do plants take in for photosynthesis?"},
       "Carbon dioxide", "Plants use carbon dioxide, water and light to make sugar.", H},
      {{"What gas do plants release during photosynthesis?", "Which gas does photosynthesis produce?"}, "Oxygen",
       "Photosynthesis splits water and releases oxygen.", H},
      {{"What is the hardest natural material?", "Which natural substance is the hardest?"}, "Diamond",
       "Diamond is a tightly bonded form of carbon.", H},
      {{"What is the closest star to Earth?", "Which star is nearest to Earth?"}, "The Sun",
       "The Sun is about 150 million kilometres away.", H},
      {{"How fast does light travel?", "What is the speed of light?"}, "About 300,000 kilometres per second",
       "In a vacuum light travels exactly 299,792,458 metres per second.", H},
      {{"How long does Earth take to orbit the Sun?", "How long is one orbit of Earth around the Sun?"},
       "About 365.25 days", "That extra quarter day is why leap years exist.", H},
      {{"How old is the universe?", "What is the age of the universe?"}, "About 13.8 billion years",
       "This is an estimate from measurements of the cosmic background radiation.", M},
      {{"How old is Earth?", "What is the age of Earth?"}, "About 4.5 billion years",
       "Radiometric dating of meteorites gives about 4.54 billion years.", M},
      {{"How many stars are in the Milky Way?", "How many stars does our galaxy have?"}, "100 to 400 billion",
       "Estimates vary because most stars are too faint to count.", M},
      {{"How many cells are in the human body?", "How many cells does a human body have?"}, "About 30 trillion",
       "This is an estimate for an average adult.", M},
      {{"How many species live on Earth?", "How many kinds of living things are there?"}, "Millions",
       "One estimate is 8.7 million, but most species are not yet described.", M},
      {{"What is dark matter made of?", "What is dark matter?"}, "Nobody knows yet",
       "Its gravity is observed, but no experiment has identified its particles.", L},
      {{"Is there life on other planets?", "Does life exist elsewhere in the universe?"}, "It is not known",
       "No life has been found beyond Earth so far.", L},
  }));

  Family weather = fact_family("future_weather", "science");
  const char* cities[] = {"Paris", "Tokyo", "London", "Cairo", "Sydney", "Toronto", "Lima", "Oslo", "Madrid",
                          "Seoul", "Nairobi", "Chicago"};
  const char* dates[] = {"1 March 2031", "15 July 2032", "3 October 2033", "20 January 2034", "9 May 2035",
                         "30 November 2036"};
  for (const char* c : cities)
    for (const char* d : dates)
      weather.items.push_back({std::string("Will it rain in ") + c + " on " + d + "?", "It cannot be known",
                               "Weather cannot be forecast reliably more than about two weeks ahead.", L});
  out.push_back(std::move(weather));
  return out;
}

// ---------------------------------------------------------------- history

std::vector<Family> history() {
  std::vector<Family> out;
  struct Event { const char* phrase; const char* statement; const char* year; };
  const Event events[] = {
      {"did World War II end", "World War II ended in 1945.", "1945"},
      {"did World War II begin", "World War II began in 1939.", "1939"},
      {"did World War I begin", "World War I began in 1914.", "1914"},
      {"did World War I end", "World War I ended in 1918.", "1918"},
      {"did the Berlin Wall fall", "The Berlin Wall fell in 1989.", "1989"},
      {"did humans first land on the Moon", "Apollo 11 landed on the Moon in 1969.", "1969"},
      {"did the French Revolution begin", "The French Revolution began in 1789.", "1789"},
      {"did the United States declare independence", "The Declaration of Independence was adopted in 1776.", "1776"},
      {"did Christopher Columbus first reach the Americas", "Columbus reached the Caribbean in 1492.", "1492"},
      {"was the Magna Carta sealed", "King John sealed the Magna Carta in 1215.", "1215"},
      {"did Constantinople fall to the Ottomans", "Constantinople fell to the Ottomans in 1453.", "1453"},
      {"was the Battle of Hastings fought", "The Battle of Hastings was fought in 1066.", "1066"},
      {"did the Titanic sink", "The Titanic sank in April 1912.", "1912"},
      {"did the Wright brothers first fly a powered plane", "The Wright brothers flew at Kitty Hawk in 1903.", "1903"},
      {"did the Soviet Union dissolve", "The Soviet Union dissolved in December 1991.", "1991"},
      {"did India gain independence", "India became independent in August 1947.", "1947"},
      {"was the United Nations founded", "The United Nations was founded in 1945.", "1945"},
      {"did Martin Luther publish his Ninety-five Theses", "Luther published the Ninety-five Theses in 1517.", "1517"},
      {"did the American Civil War end", "The American Civil War ended in 1865.", "1865"},
      {"did Yuri Gagarin fly into space", "Yuri Gagarin orbited Earth in April 1961.", "1961"},
      {"did the Chernobyl disaster happen", "The Chernobyl reactor exploded in April 1986.", "1986"},
      {"was Sputnik 1 launched", "The Soviet Union launched Sputnik 1 in 1957.", "1957"},
      {"was Nelson Mandela released from prison", "Nelson Mandela was freed in February 1990.", "1990"},
      {"did Germany reunify", "East and West Germany reunified in October 1990.", "1990"},
      {"was the Eiffel Tower completed", "The Eiffel Tower was completed in 1889.", "1889"},
      {"did the Great Fire of London happen", "The Great Fire of London burned in September 1666.", "1666"},
      {"was the Battle of Waterloo fought", "Napoleon was defeated at Waterloo in 1815.", "1815"},
      {"did euro coins and notes enter circulation", "Euro cash entered circulation on 1 January 2002.", "2002"},
  };
  Family years = fact_family("event_year", "history");
  for (const auto& e : events)
    for (const char* t : {"In what year {}?", "When {}?", "What year {}?"})
      years.items.push_back({fill(t, e.phrase), e.year, e.statement, H});
  out.push_back(std::move(years));

  out.push_back(from_facts("people", "history", {
      {{"Who painted the Mona Lisa?", "Which artist painted the Mona Lisa?"}, "Leonardo da Vinci",
       "Leonardo painted it in the early 1500s.", H},
      {{"Who wrote Romeo and Juliet?", "Who is the author of Romeo and Juliet?"}, "William Shakespeare",
       "Shakespeare wrote the play in the 1590s.", H},
      {{"Who was the first President of the United States?", "Who was the first US president?"},
       "George Washington", "Washington took office in 1789.", H},
      {{"Who was the first person to walk on the Moon?", "Who first stepped onto the Moon?"}, "Neil Armstrong",
       "Armstrong stepped onto the Moon in July 1969.", H},
      {{"Who discovered penicillin?", "Which scientist discovered penicillin?"}, "Alexander Fleming",
       "Fleming noticed its effect on bacteria in 1928.", H},
      {{"Who developed the theory of relativity?", "Which scientist created the theory of relativity?"},
       "Albert Einstein", "Einstein published special relativity in 1905 and general relativity in 1915.", H},
      {{"Who was the first woman to win a Nobel Prize?", "Which woman first won a Nobel Prize?"}, "Marie Curie",
       "Marie Curie shared the 1903 Nobel Prize in Physics.", H},
      {{"Who was the first Roman emperor?", "Who became the first emperor of Rome?"}, "Augustus",
       "Augustus ruled from 27 BC.", H},
      {{"Who was the British prime minister for most of World War II?", "Who led Britain during most of World War II?"},
       "Winston Churchill", "Churchill was prime minister from 1940 to 1945.", H},
      {{"Who proposed evolution by natural selection?", "Who developed the theory of natural selection?"},
       "Charles Darwin", "Darwin and Alfred Russel Wallace presented the idea in 1858.", H},
      {{"Who composed the Ninth Symphony with the Ode to Joy?", "Which composer wrote the Ode to Joy symphony?"},
       "Ludwig van Beethoven", "Beethoven finished his Ninth Symphony in 1824.", H},
      {{"Who invented the telephone?", "Who made the first telephone?"}, "Alexander Graham Bell",
       "Bell got the patent in 1876, but Elisha Gray and Antonio Meucci have rival claims.", M},
      {{"Who invented the light bulb?", "Who made the first light bulb?"}, "Thomas Edison is usually credited",
       "Joseph Swan and others built working bulbs before or alongside Edison.", M},
      {{"Who built Stonehenge?", "Which people built Stonehenge?"}, "Neolithic people of Britain",
       "It was built in stages from about 3000 BC; the builders left no written record.", M},
      {{"When was the wheel invented?", "How old is the wheel?"}, "Around 3500 BC",
       "The oldest known wheels come from Mesopotamia and Europe; the exact date is unknown.", M},
      {{"When did Gutenberg build his printing press?", "When was Gutenberg's printing press invented?"},
       "Around 1440", "Gutenberg printed his Bible in the 1450s; the exact year of the press is uncertain.", M},
  }));

  Family dreams = fact_family("unknowable_past", "history");
  const char* people[] = {"Julius Caesar", "Cleopatra", "Genghis Khan", "Charlemagne", "Napoleon",
                          "William Shakespeare", "Queen Elizabeth I", "Alexander the Great", "Confucius", "Socrates"};
  for (const char* p : people) {
    dreams.items.push_back({std::string("What did ") + p + " dream about on the night of their thirtieth birthday?",
                            "Nobody can know", std::string("No record of ") + p + "'s dreams exists.", L});
    dreams.items.push_back({std::string("What was ") + p + " thinking at noon on their twentieth birthday?",
                            "Nobody can know", "Private thoughts leave no record.", L});
  }
  out.push_back(std::move(dreams));
  return out;
}

// ---------------------------------------------------------------- technology

std::vector<Family> technology() {
  std::vector<Family> out;
  struct Acronym { const char* abbr; const char* full; };
  const Acronym acronyms[] = {
      {"CPU", "Central Processing Unit"}, {"GPU", "Graphics Processing Unit"}, {"RAM", "Random Access Memory"},
      {"ROM", "Read-Only Memory"}, {"USB", "Universal Serial Bus"}, {"HTML", "HyperText Markup Language"},
      {"HTTP", "Hypertext Transfer Protocol"}, {"URL", "Uniform Resource Locator"}, {"DNS", "Domain Name System"},
      {"TCP", "Transmission Control Protocol"}, {"SSD", "Solid-State Drive"}, {"HDD", "Hard Disk Drive"},
      {"PDF", "Portable Document Format"}, {"LED", "Light-Emitting Diode"}, {"LCD", "Liquid Crystal Display"},
      {"GPS", "Global Positioning System"}, {"AI", "Artificial Intelligence"},
      {"API", "Application Programming Interface"}, {"SQL", "Structured Query Language"},
      {"JSON", "JavaScript Object Notation"}, {"CSS", "Cascading Style Sheets"}, {"VPN", "Virtual Private Network"},
      {"LAN", "Local Area Network"}, {"OS", "Operating System"}, {"ASCII", "American Standard Code for Information Interchange"},
      {"LLM", "Large Language Model"}, {"IoT", "Internet of Things"}, {"FTP", "File Transfer Protocol"},
      {"SSH", "Secure Shell"}, {"NFC", "Near-Field Communication"}, {"PNG", "Portable Network Graphics"},
      {"XML", "Extensible Markup Language"}, {"UI", "User Interface"}, {"ISP", "Internet Service Provider"},
  };
  Family ac = fact_family("acronym", "technology");
  for (const auto& a : acronyms)
    for (const char* t : {"What does {} stand for?", "What is {} short for?", "What is the full form of {}?"})
      ac.items.push_back({fill(t, a.abbr), a.full, std::string(a.abbr) + " is the abbreviation of " + a.full + ".", H});
  out.push_back(std::move(ac));

  struct Creation { const char* thing; const char* verb; const char* who; const char* when; };
  const Creation creations[] = {
      {"Linux", "created", "Linus Torvalds", "in 1991"},
      {"Python", "created", "Guido van Rossum", "in 1991"},
      {"C++", "created", "Bjarne Stroustrup", "at Bell Labs in the 1980s"},
      {"the C programming language", "created", "Dennis Ritchie", "at Bell Labs in the early 1970s"},
      {"the World Wide Web", "invented", "Tim Berners-Lee", "at CERN in 1989"},
      {"Java", "created", "James Gosling", "at Sun Microsystems in the 1990s"},
      {"JavaScript", "created", "Brendan Eich", "at Netscape in 1995"},
      {"Git", "created", "Linus Torvalds", "in 2005"},
      {"Microsoft", "founded", "Bill Gates and Paul Allen", "in 1975"},
      {"Google", "founded", "Larry Page and Sergey Brin", "in 1998"},
      {"Apple", "founded", "Steve Jobs, Steve Wozniak and Ronald Wayne", "in 1976"},
  };
  Family cr = fact_family("creator", "technology");
  for (const auto& c : creations) {
    std::string expl = std::string(c.who) + " " + c.verb + " " + c.thing + " " + c.when + ".";
    cr.items.push_back({std::string("Who ") + c.verb + " " + c.thing + "?", c.who, expl, H});
    cr.items.push_back({std::string("Who ") + (std::string(c.verb) == "founded" ? "were the founders of " : "is the creator of ") +
                            c.thing + "?",
                        c.who, expl, H});
  }
  out.push_back(std::move(cr));

  out.push_back(from_facts("tech_facts", "technology", {
      {{"How many bits are in a byte?", "A byte is made of how many bits?"}, "8",
       "A byte is eight bits on all modern computers.", H},
      {{"Which digits does binary use?", "What digits are used in binary numbers?"}, "0 and 1",
       "Binary is base 2, so it needs only two digits.", H},
      {{"What does a compiler do?", "What is a compiler for?"}, "It translates source code into machine code",
       "The processor can only run machine instructions.", H},
      {{"Which company makes the iPhone?", "Who makes the iPhone?"}, "Apple",
       "Apple released the first iPhone in 2007.", H},
      {{"Which company develops Windows?", "Who makes the Windows operating system?"}, "Microsoft",
       "Microsoft released the first Windows in 1985.", H},
      {{"Which company develops Android?", "Who makes the Android operating system?"}, "Google",
       "Google bought Android Inc. in 2005 and leads its development.", H},
      {{"Which language runs in every web browser?", "What programming language do web browsers run?"}, "JavaScript",
       "All major browsers include a JavaScript engine.", H},
      {{"How many transistors does a modern CPU have?", "How many transistors are in a processor today?"},
       "Billions", "Counts range from a few billion to over a hundred billion, depending on the chip.", M},
      {{"How long does an SSD last?", "What is the lifespan of an SSD?"}, "Usually 5 to 10 years",
       "It depends on how much data is written to it.", M},
      {{"How many websites exist?", "How many websites are there?"}, "Over a billion",
       "Most of them are inactive, so counts differ.", M},
  }));

  Family future = fact_family("future_tech", "technology");
  for (const char* year : {"2040", "2045", "2050", "2055", "2060"}) {
    future.items.push_back({std::string("What will the most popular programming language be in ") + year + "?",
                            "It cannot be known yet", "Popularity depends on future technology and fashion.", L});
    future.items.push_back({std::string("What will one bitcoin cost on 1 January ") + year + "?",
                            "It cannot be known yet", "Prices depend on future markets.", L});
    future.items.push_back({std::string("Which phone will sell best in ") + year + "?", "It cannot be known yet",
                            "Future sales depend on products that do not exist yet.", L});
  }
  out.push_back(std::move(future));
  return out;
}

// ---------------------------------------------------------------- general knowledge

std::vector<Family> general_knowledge() {
  std::vector<Family> out;
  const char* days[] = {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"};
  Family dw = fact_family("weekday", "general_knowledge");
  for (int i = 0; i < 7; ++i) {
    const char* next = days[(i + 1) % 7];
    const char* prev = days[(i + 6) % 7];
    dw.items.push_back({fill("Which day comes after {}?", days[i]), next,
                        std::string(next) + " follows " + days[i] + ".", H});
    dw.items.push_back({fill("Which day comes before {}?", days[i]), prev,
                        std::string(prev) + " comes just before " + days[i] + ".", H});
  }
  out.push_back(std::move(dw));

  const char* months[] = {"January", "February", "March",     "April",   "May",      "June",
                          "July",    "August",   "September", "October", "November", "December"};
  const int month_days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  Family mo = fact_family("month", "general_knowledge");
  for (int i = 0; i < 12; ++i) {
    const char* next = months[(i + 1) % 12];
    const char* prev = months[(i + 11) % 12];
    mo.items.push_back({fill("Which month comes after {}?", months[i]), next,
                        std::string(next) + " follows " + months[i] + ".", H});
    mo.items.push_back({fill("Which month comes before {}?", months[i]), prev,
                        std::string(prev) + " comes just before " + months[i] + ".", H});
    mo.items.push_back({std::string("What is the ") + kOrdinals[i + 1] + " month of the year?", months[i],
                        std::string(months[i]) + " is month number " + std::to_string(i + 1) + ".", H});
    if (i == 1)
      mo.items.push_back({"How many days does February have?", "28, or 29 in a leap year",
                          "A leap year adds a day to February.", H});
    else
      mo.items.push_back({fill("How many days does {} have?", months[i]), std::to_string(month_days[i]),
                          std::string(months[i]) + " always has " + std::to_string(month_days[i]) + " days.", H});
  }
  out.push_back(std::move(mo));

  struct Young { const char* animal; const char* young; };
  const Young young[] = {{"cat", "a kitten"}, {"dog", "a puppy"}, {"cow", "a calf"}, {"horse", "a foal"},
                         {"sheep", "a lamb"}, {"goat", "a kid"}, {"pig", "a piglet"}, {"frog", "a tadpole"},
                         {"kangaroo", "a joey"}, {"swan", "a cygnet"}, {"goose", "a gosling"}, {"duck", "a duckling"},
                         {"owl", "an owlet"}, {"bear", "a cub"}, {"lion", "a cub"}, {"deer", "a fawn"}};
  Family yg = fact_family("animal_young", "general_knowledge");
  for (const auto& y : young)
    for (const char* t : {"What is a baby {} called?", "What do you call a young {}?"})
      yg.items.push_back({fill(t, y.animal), cap(y.young),
                          std::string("A young ") + y.animal + " is called " + y.young + ".", H});
  out.push_back(std::move(yg));

  struct Legs { const char* animal; const char* n; const char* why; };
  const Legs legs[] = {{"spider", "8", "Spiders are arachnids, which have eight legs."},
                       {"ant", "6", "Ants are insects, and insects have six legs."},
                       {"bee", "6", "Bees are insects, and insects have six legs."},
                       {"butterfly", "6", "Butterflies are insects, and insects have six legs."},
                       {"scorpion", "8", "Scorpions are arachnids, which have eight legs."},
                       {"horse", "4", "Horses are four-legged mammals."},
                       {"chicken", "2", "Birds walk on two legs."},
                       {"crab", "10", "Crabs are decapods: ten legs including the two claws."}};
  Family lg = fact_family("legs", "general_knowledge");
  for (const auto& l : legs)
    lg.items.push_back({fill("How many legs does a {} have?", l.animal), l.n, l.why, H});
  out.push_back(std::move(lg));

  const char* shapes[] = {"", "", "", "triangle", "square", "pentagon", "hexagon", "heptagon", "octagon", "nonagon", "decagon"};
  Family sh = fact_family("shape_sides", "general_knowledge");
  for (int n = 3; n <= 10; ++n) {
    std::string expl = std::string("A ") + shapes[n] + " has " + std::to_string(n) + " sides.";
    sh.items.push_back({fill("How many sides does a {} have?", shapes[n]), std::to_string(n), expl, H});
    sh.items.push_back({"What is a shape with " + std::to_string(n) + " sides called?",
                        std::string("A ") + shapes[n], expl, H});
  }
  out.push_back(std::move(sh));

  struct Mix { const char* a; const char* b; const char* result; };
  const Mix mixes[] = {{"blue", "yellow", "Green"}, {"red", "yellow", "Orange"}, {"red", "blue", "Purple"},
                       {"red", "white", "Pink"}, {"black", "white", "Grey"}};
  Family mx = fact_family("colour_mix", "general_knowledge");
  for (const auto& m : mixes) {
    std::string lower = m.result;
    lower[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(lower[0])));
    std::string expl = std::string("Mixing ") + m.a + " and " + m.b + " paint gives " + lower + ".";
    mx.items.push_back({std::string("What colour do you get by mixing ") + m.a + " and " + m.b + " paint?", m.result, expl, H});
    mx.items.push_back({std::string("What colour do you get by mixing ") + m.b + " and " + m.a + " paint?", m.result, expl, H});
  }
  out.push_back(std::move(mx));

  Family personal = fact_family("personal_unknowable", "general_knowledge");
  for (const char* thing : {"colour", "food", "song", "film", "book", "animal", "sport", "number", "season", "city",
                            "drink", "game", "school subject", "holiday", "flower"})
    personal.items.push_back({std::string("What is my favourite ") + thing + "?", "I cannot know that",
                              "I have no information about your personal preferences.", L});
  for (const char* who : {"mother", "father", "sister", "brother", "best friend", "neighbour", "teacher", "boss",
                          "dog", "cat"}) {
    personal.items.push_back({std::string("What is my ") + who + "'s name?", "I cannot know that",
                              std::string("I have no information about your ") + who + ".", L});
    personal.items.push_back({std::string("How old is my ") + who + "?", "I cannot know that",
                              std::string("I have no information about your ") + who + ".", L});
  }
  for (const char* meal : {"breakfast", "lunch", "dinner"})
    for (const char* when : {"yesterday", "last Monday", "on my last birthday"})
      personal.items.push_back({std::string("What did I eat for ") + meal + " " + when + "?", "I cannot know that",
                                "I have no record of your meals.", L});
  personal.items.push_back({"What number am I thinking of?", "I cannot know that", "I cannot read your thoughts.", L});
  out.push_back(std::move(personal));

  Family amb = fact_family("ambiguous", "general_knowledge");
  for (const char* q : {"How long is it?", "Which one is better?", "What time does it start?", "Is it far?",
                        "How much does it cost?", "Who won?", "When does it open?", "Where is it?", "Is it safe?",
                        "How big is it?", "Did they agree?", "Was it worth it?"})
    amb.items.push_back({q, "The question is unclear", "It does not say what it refers to, so no answer can be given.", L});
  out.push_back(std::move(amb));
  return out;
}

// ---------------------------------------------------------------- practical

std::vector<Family> practical() {
  std::vector<Family> out;
  out.push_back(from_facts("practical_facts", "practical", {
      {{"How many teaspoons are in a tablespoon?", "A tablespoon holds how many teaspoons?"}, "3",
       "In US and UK measures one tablespoon is three teaspoons.", H},
      {{"What number do you call for emergencies in the European Union?", "What is the emergency number in the EU?"},
       "112", "112 works in every EU country.", H},
      {{"What is the emergency phone number in the United States?", "Which number do you call for emergencies in the US?"},
       "911", "911 reaches police, fire and ambulance services in the US.", H},
      {{"What is the emergency phone number in the United Kingdom?", "Which number do you call for emergencies in the UK?"},
       "999", "999 works in the UK, and so does 112.", H},
      {{"What should you do if a pan of oil catches fire?", "How do you put out a burning pan of oil?"},
       "Turn off the heat and cover the pan", "Water makes an oil fire flare up; a lid cuts off the oxygen.", H},
      {{"How long should you wash your hands?", "For how long should you scrub your hands with soap?"},
       "At least 20 seconds", "Health agencies recommend at least 20 seconds with soap.", H},
      {{"How should you treat a minor burn?", "What is the first aid for a small burn?"},
       "Cool it under cool running water", "About 20 minutes of cool water limits the damage.", H},
      {{"Which way do you turn a screw to loosen it?", "How do you loosen a normal screw?"}, "Anticlockwise",
       "Most screws have right-hand threads.", H},
      {{"How often should you replace a toothbrush?", "When should you get a new toothbrush?"},
       "Every 3 to 4 months", "Dentists advise it, or sooner if the bristles fray.", M},
      {{"How much sleep does an adult need?", "How many hours should an adult sleep?"}, "About 7 to 9 hours",
       "Needs differ from person to person.", M},
      {{"How much water should an adult drink a day?", "How many litres of water should you drink daily?"},
       "About 2 litres", "Advice varies with body size, heat and exercise.", M},
      {{"How long does it take to hard-boil an egg?", "How many minutes should you boil an egg to make it hard?"},
       "About 10 minutes", "The time depends on the egg's size and starting temperature.", M},
      {{"How long can cooked rice stay in the fridge?", "How many days does cooked rice keep in the fridge?"},
       "About 1 to 4 days", "Food agencies give different limits; cool it quickly either way.", M},
      {{"When will my package arrive?", "When will my parcel be delivered?"}, "I cannot know that",
       "I have no access to your delivery or its tracking.", L},
      {{"Will my flight be delayed tomorrow?", "Is my next flight going to be late?"}, "I cannot know that",
       "Delays depend on weather and traffic that are not known yet.", L},
      {{"How much will my electricity bill be next month?", "What will my next power bill be?"}, "I cannot know that",
       "It depends on your usage and tariff, which I do not know.", L},
      {{"How long will my car battery last?", "When will my car battery die?"}, "I cannot know that",
       "It depends on the battery's age, the climate and how you drive.", L},
  }));
  return out;
}

// ---------------------------------------------------------------- lema itself

std::vector<Family> lema_itself() {
  std::vector<Family> out;
  out.push_back(from_facts("lema_facts", "lema", {
      {{"What is LEMA?", "What does LEMA do?", "What is LEMA used for?"},
       "A tool that fine-tunes Llama-family models with LoRA",
       "It streams the frozen model through the GPU one layer at a time.", H},
      {{"How does LEMA fit a large model on a small GPU?", "Why does LEMA need little GPU memory?"},
       "It streams the model one layer at a time",
       "Only a few layers are in GPU memory at once; the rest wait on disk or in RAM.", H},
      {{"What does LoRA stand for?", "What is LoRA short for?"}, "Low-Rank Adaptation",
       "LoRA trains small low-rank matrices beside the frozen weights.", H},
      {{"Does LEMA change the base model's weights?", "Are the base weights updated by LEMA?"}, "No",
       "LEMA trains only the LoRA adapter; the base model stays frozen.", H},
      {{"Which models can LEMA fine-tune?", "What model family does LEMA support?"}, "Llama-family models",
       "LEMA supports Llama, Mistral and TinyLlama style models.", H},
      {{"Where does the LEMA scheduler store its jobs?", "What database does the LEMA scheduler use?"}, "SQLite",
       "Jobs, stages and checkpoints are recorded in SQLite.", H},
      {{"How do LEMA workers talk to the scheduler?", "What do LEMA workers use to reach the scheduler?"},
       "ZeroMQ with msgpack messages", "Each worker connects to the scheduler over ZeroMQ.", H},
      {{"In what format does LEMA save adapters?", "What format are LEMA adapters in?"}, "PEFT's adapter format",
       "An adapter is adapter_config.json plus adapter_model.safetensors.", H},
      {{"Which command builds a dataset in LEMA?", "How do I build a dataset with LEMA?"}, "lema dataset build",
       "It writes train.jsonl, eval.jsonl and stats.json.", H},
      {{"Which command prints the LEMA version?", "How do I see which LEMA version I have?"}, "lema version",
       "It prints the version and the git commit.", H},
      {{"What confidence levels do LEMA replies use?", "Which confidence values can a LEMA reply have?"},
       "High, Medium and Low", "Low is for questions that cannot be answered reliably.", H},
      {{"What happens if a LEMA worker dies?", "What does LEMA do when a worker crashes?"},
       "The stage resumes from the last checkpoint", "The scheduler gives the stage to another worker.", H},
      {{"What stages does a LEMA job have?", "Which stages make up a LEMA job?"}, "Dataset, train, eval and merge",
       "The scheduler runs them in order on workers.", H},
      {{"How many people use LEMA?", "How many users does LEMA have?"}, "I cannot know that",
       "There is no public record of its users.", L},
      {{"When will the next LEMA version be released?", "When is the next LEMA release?"}, "It is not known",
       "No release date has been announced.", L},
  }));
  return out;
}

}  // namespace

std::vector<Family> lema_reply_families() {
  std::vector<Family> all;
  for (auto* part : {&geography, &science, &history, &technology, &general_knowledge, &practical, &lema_itself})
    for (auto& f : (*part)()) all.push_back(std::move(f));
  for (auto& f : all) f.weight = static_cast<double>(f.items.size());
  for (auto& f : lema_reply_computed_families()) all.push_back(std::move(f));
  return all;
}

}  // namespace lema
