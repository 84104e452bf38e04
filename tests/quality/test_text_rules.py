"""Text rules (Gopher / C4) on a planted corpus: good prose survives, each planted page names its reason."""

from __future__ import annotations

import random
import string

import pytest

from specialize.quality.text_rules import (
    TextFilterSettings,
    default_text_filter_section,
    duplicate_ngram_chars,
    text_verdict,
    top_ngram_chars,
)

SETTINGS = TextFilterSettings.from_profile(default_text_filter_section())

# --- good documents: must survive -------------------------------------------------------------------------

GOOD_EN = {
    "encyclopedia_danube": """The Danube is the second-longest river in Europe, after the Volga. It rises in the Black Forest of Germany and flows for some 2,850 kilometres to the Black Sea, passing through or along the borders of ten countries, more than any other river in the world.

Four capital cities stand on its banks: Vienna, Bratislava, Budapest and Belgrade. For centuries the river formed a frontier of the Roman Empire, and the forts built along it grew into many of the towns that still line the water today.

The river has long been an important route for trade. Since the opening of the Rhine-Main-Danube Canal in 1992, barges have been able to travel from the North Sea to the Black Sea without leaving inland waters. The delta, where the river divides into three main channels before reaching the sea, is one of the largest wetlands in Europe and a protected home for hundreds of species of birds.""",

    "news_bike_lanes": """City Council Approves Protected Bike Lanes on Main Street

The city council voted seven to two on Tuesday night to build protected bike lanes along a two-mile stretch of Main Street, ending a debate that has divided residents for more than a year.

Supporters argued that the lanes would make the busy corridor safer for cyclists and pedestrians alike. "We have seen three serious crashes on this street since January," said council member Rosa Delgado, who sponsored the measure. "That is three too many."

Several business owners spoke against the plan, saying that the loss of roughly forty parking spaces would hurt shops that depend on drivers stopping for a few minutes. The council agreed to add loading zones at each intersection and to review the project after its first year.

Construction is expected to begin in the spring and to take about four months.""",

    "fiction_lighthouse": """The keeper had not spoken to anyone in eleven days when the boat appeared on the grey line of the horizon. He watched it for a long time from the gallery, one hand on the cold iron rail, before he allowed himself to believe that it was coming toward the island.

By the time it reached the landing the wind had risen, and the young man at the tiller looked pale and soaked through. "Are you Mr. Hale?" he shouted over the noise of the water.

"I am," said the keeper. "And you are late. The supply boat was due on Monday."

"There was no supply boat," the young man said. "There was a storm, and then there was me." He held up a canvas bag as if it explained everything, and perhaps it did. Hale took the rope from him and tied it off, and neither of them said anything more until they were inside with the kettle on the stove.""",

    "science_photosynthesis": """Photosynthesis is the process by which plants, algae and some bacteria turn light into chemical energy. It takes place mainly in the leaves, inside small structures called chloroplasts, which contain the green pigment chlorophyll.

The process has two stages. In the first, light is absorbed by chlorophyll and used to split water molecules, which releases oxygen as a by-product and produces energy-carrying molecules. In the second stage, often called the Calvin cycle, that energy is used to take carbon dioxide from the air and build it into sugars.

Nearly all life on Earth depends on photosynthesis, either directly or indirectly. It supplies the oxygen that animals breathe, and the sugars it produces are the starting point of almost every food chain. Scientists are studying how the process works in detail in the hope of designing crops that grow faster with less water.""",

    "recipe_bread": """Making a simple loaf of bread at home takes very little equipment and only four ingredients: flour, water, salt and yeast. Start by mixing 500 grams of flour with 10 grams of salt and 7 grams of dried yeast in a large bowl. Add 350 millilitres of warm water and stir until no dry flour remains.

Tip the dough onto a lightly floured surface and knead it for about ten minutes, until it feels smooth and springs back when you press it with a finger. Put it back in the bowl, cover it with a damp towel and leave it somewhere warm for an hour, or until it has doubled in size.

Shape the dough into a round, place it on a baking tray and let it rise again for thirty minutes. Bake it at 220 degrees for around thirty-five minutes. The loaf is ready when it sounds hollow as you tap the bottom. Let it cool before slicing, however tempting the smell may be.""",

    "history_printing": """Johannes Gutenberg's printing press, developed in Mainz around 1450, changed the way knowledge spread across Europe. Before it, books were copied by hand, usually by monks or professional scribes, and a single copy of a long work could take months to produce.

Gutenberg combined several existing technologies in a new way. He cast individual letters in metal so that they could be arranged, inked and reused, and he adapted the screw press that was already used for making wine and paper. The result could produce hundreds of identical pages in a day.

Within fifty years, printing shops had opened in more than two hundred cities. Prices fell, more people learned to read, and ideas travelled faster than ever before. Historians often point to the press as one of the conditions that made the Reformation and the Scientific Revolution possible.""",

    "travel_lisbon": """Three Days in Lisbon

We arrived in Lisbon on a warm evening in late September and went straight out to find dinner in the narrow streets of the Alfama district. The restaurant we chose had only six tables, and the owner recommended grilled sardines with a glass of green wine, which turned out to be exactly right.

The next morning we rode the famous yellow tram up the steep hills to the castle. The views over the red roofs and the river were worth the crowded ride, although we decided to walk back down. In the afternoon we took a train to Belém to see the monastery and to try the custard tarts that the area is known for.

On our last day we simply wandered. Lisbon is a city that rewards getting lost, and some of our favourite moments came from turning into a side street for no reason at all.""",

    "howto_bike_tire": """Fixing a flat bicycle tire is one of the most useful skills a cyclist can learn, and it takes only a few minutes once you have done it a couple of times. You will need the following tools:

- a set of tire levers
- a spare inner tube or a patch kit
- a pump that fits your valve type

First, release the brake if necessary and remove the wheel from the frame. Push one tire lever under the edge of the tire, hook it onto a spoke, and use a second lever to work your way around the rim until one side of the tire comes free.

Pull out the old tube and run your fingers carefully around the inside of the tire to find whatever caused the puncture. If you skip this step, the new tube will often go flat again within a mile. Fit the new tube, push the tire back onto the rim with your thumbs, and inflate it to the pressure printed on the sidewall.""",

    "essay_libraries": """Public libraries are among the few places left where nobody expects you to buy anything. You can walk in out of the rain, sit at a table for an afternoon, read the newspaper or use a computer, and leave without being asked what you came for.

That quality is easy to overlook, but it is also what makes libraries so valuable to the people who rely on them most. For a student without a quiet room at home, a job seeker without a printer, or an older person who wants some company, the library is not a luxury. It is part of the basic structure of a town.

When budgets are cut, libraries are often among the first services to lose hours or staff. It is worth remembering, before that happens, how much they offer for how little they cost.""",

    "wiki_pythagoras": """In mathematics, the Pythagorean theorem is a fundamental relation in Euclidean geometry between the three sides of a right triangle.[1] It states that the area of the square whose side is the hypotenuse is equal to the sum of the areas of the squares on the other two sides.
The theorem can be written as an equation relating the lengths of the sides a, b and the hypotenuse c, sometimes called the Pythagorean equation: {\\displaystyle a^{2}+b^{2}=c^{2}}.
The theorem is named for the Greek philosopher Pythagoras, born around 570 BC. It has been proved numerous times by many different methods, possibly the most of any mathematical theorem.[2]
The proofs are diverse, including both geometric proofs and algebraic proofs, with some dating back thousands of years. When Euclidean space is represented by a Cartesian coordinate system in analytic geometry, the theorem gives the distance between two points.[citation needed]""",

    "forum_answer": """I had the same problem with my old laptop last winter, and it turned out to be the battery rather than the charger. The easiest way to check is to take the battery out completely and run the laptop from the power cable alone. If it starts normally, the battery is the culprit.

Replacement batteries are not expensive, but make sure you buy one that matches the exact model number printed on the old one. I made the mistake of ordering a cheaper one that was supposed to be compatible, and it never charged past sixty percent.

Hope that helps, and good luck!""",
}

GOOD_OTHER = {  # (language, text)
    "zh_history": ("zh", """长城是中国古代的军事防御工程，东起山海关，西至嘉峪关，全长数千公里。早在春秋战国时期，各国就开始修筑城墙，用来抵御北方游牧民族的侵扰。秦始皇统一六国以后，把原有的城墙连接起来，形成了万里长城的雏形。

今天我们看到的长城大多是明代修建的。明朝为了防御蒙古的进攻，用了将近两百年的时间不断加固和延长城墙，并修建了大量的烽火台和关隘。

如今，长城已经成为中华民族的象征之一，每年吸引着成千上万的游客前来参观。一九八七年，长城被列入世界文化遗产名录。"""),
    "zh_science": ("zh", """睡眠对人体健康非常重要。研究表明，成年人每天需要七到九个小时的睡眠，而青少年需要的时间更长。在睡眠过程中，大脑会整理白天接收到的信息，把短期记忆转化为长期记忆，同时清除代谢产生的废物。

长期睡眠不足会导致注意力下降、情绪不稳定，还会增加患心脏病和糖尿病的风险。专家建议，睡前一小时尽量不要使用手机和电脑，因为屏幕发出的蓝光会抑制褪黑素的分泌，使人更难入睡。保持规律的作息时间，也是改善睡眠质量的有效方法。"""),
    "zh_story": ("zh", """那年冬天，外婆住进了我们家。她带来的行李很少，只有一个旧木箱和一床用了几十年的棉被。每天早上，她都比所有人起得早，在厨房里熬一锅小米粥，然后坐在窗边，看着院子里的那棵老槐树发呆。

我问她在想什么，她总是笑着说：“没想什么，就是看看。”后来我才知道，那棵树和她老家门口的那一棵一模一样。她在那个村子里生活了七十多年，直到外公去世以后，才不得不离开。

春天来的时候，槐树开花了，满院子都是香味。外婆那天特别高兴，做了一大盘槐花饼，让我给邻居们送去。"""),
    "de_news": ("de", """Die Stadt Freiburg will bis zum Jahr 2035 klimaneutral werden. Der Gemeinderat hat am Dienstag einen Plan beschlossen, nach dem alle städtischen Gebäude in den nächsten zehn Jahren mit Solaranlagen ausgestattet werden sollen.

Außerdem sollen die Busse und Straßenbahnen häufiger fahren und die Ticketpreise für Schüler sinken. Kritiker bemängeln allerdings, dass die Finanzierung noch nicht gesichert sei. Die Oberbürgermeisterin betonte dagegen, dass sich die Investitionen langfristig auszahlen würden, weil die Energiekosten deutlich sinken. Die ersten Projekte sollen bereits im kommenden Frühjahr beginnen."""),
    "fr_article": ("fr", """La Loire est le plus long fleuve de France. Elle prend sa source au mont Gerbier de Jonc, dans le Massif central, et se jette dans l'océan Atlantique près de Saint-Nazaire après un parcours de plus de mille kilomètres.

On la surnomme souvent le dernier fleuve sauvage d'Europe, car son cours a été relativement peu aménagé. Ses bancs de sable changent de place au gré des crues, ce qui rend la navigation difficile mais offre un refuge à de nombreux oiseaux.

La vallée de la Loire, célèbre pour ses châteaux de la Renaissance, est inscrite au patrimoine mondial de l'UNESCO depuis l'an 2000. Chaque année, des milliers de cyclistes parcourent la piste qui longe le fleuve."""),
}

# --- planted bad documents: (expected reason, language, text) -----------------------------------------------


def _gibberish(seed: int, words: int, low: int, high: int) -> str:
    rng = random.Random(seed)
    return " ".join("".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(low, high)))
                    for _ in range(words)) + "."


_MENU = "\n".join(f"• {item}" for item in (
    "Home", "About us", "Our team", "Careers at the company", "Products and services", "Garden furniture",
    "Outdoor lighting", "Kitchen and dining", "Bathroom accessories", "Sale items", "New arrivals this week",
    "Gift cards", "Store locator", "Opening hours", "Contact us", "Customer service", "Returns and refunds",
    "Shipping information", "Track your order", "Frequently asked questions", "Blog", "Newsletter sign up",
    "Press releases", "Investor relations", "Sitemap", "Accessibility statement"))

_CSS = """The following stylesheet gives the page its layout. Copy it into the head of your document and adjust the colours to match your brand.
body { margin: 0; padding: 0; font-family: sans-serif; }
.header { background: #333; color: white; height: 60px; }
.nav a { color: white; text-decoration: none; margin: 0 10px; }
.content { max-width: 960px; margin: 0 auto; padding: 20px; }
function toggleMenu() { var nav = document.getElementById('nav'); if (nav.style.display === 'none') { nav.style.display = 'block'; } else { nav.style.display = 'none'; } }
.footer { text-align: center; font-size: 12px; color: #999; }"""

_FORUM_THREAD = "\n\n".join(
    f"{user} wrote:\n{post}\nReply Quote Report\nLike Share" for user, post in (
        ("marta_k", "Has anyone tried the new ferry timetable? The morning boat seems to leave ten minutes earlier now."),
        ("dave1972", "Yes, it changed last week. They posted a notice at the harbour but nothing online as far as I can tell."),
        ("seaview", "I missed it twice already. Would be nice if they sent an email to season ticket holders."),
        ("marta_k", "Thanks both. I will ask at the office tomorrow and report back here."),
        ("harbourmaster", "The new times are on the board by the ticket window and should be on the website by Friday."),
    ))

PLANTED = {
    "short_en": ("too_short", "en", "Click here to subscribe to our newsletter and get ten percent off your first order."),
    "short_zh": ("too_short", "zh", "欢迎访问我们的网站，点击这里了解更多信息。"),
    "lorem_page": ("lorem_ipsum", "en", GOOD_EN["essay_libraries"] + "\n\nLorem ipsum dolor sit amet, consectetur adipiscing elit, "
                   "sed do eiusmod tempor incididunt ut labore et dolore magna aliqua."),
    "lorem_zh": ("lorem_ipsum", "zh", GOOD_OTHER["zh_science"][1] + "\nLorem ipsum dolor sit amet."),
    "css_page": ("curly_braces", "en", _CSS),
    "json_dump": ("curly_braces", "en", "Here is the response we got back from the server when we called the endpoint with the default settings: "
                  + ", ".join(f'{{"id": {i}, "name": "item {i}", "tags": {{"color": "red", "size": "large"}}}}' for i in range(12)) + "."),
    "gibberish_long_words": ("bad_mean_word_length", "en", _gibberish(1, 80, 9, 18)),
    "single_letters": ("bad_mean_word_length", "en", " ".join("abcdefghij"[i % 10] for i in range(120)) + " the end of it."),
    "hashtag_spam": ("symbol_ratio", "en", "Had the best day at the beach with the family and we loved it! " + " ".join(
        f"#{tag}" for tag in ("summer", "beach", "sunset", "family", "travel", "photography", "nofilter", "ocean", "vacation",
                              "instagood", "happy", "love", "waves", "sand", "holiday", "weekend", "blessed", "sun", "fun",
                              "memories", "explore", "wanderlust", "travelgram", "naturelovers", "goodvibes", "friends",
                              "picoftheday", "beachlife", "seaside", "relax", "chill", "paradise", "coast", "bluesky",
                              "saltwater", "surf", "goldenhour", "view", "escape", "adventure", "photooftheday", "summertime"))),
    "ellipsis_snippets": ("symbol_ratio", "en", " ".join(f"The {w} of the day... " for w in (
        "story", "picture", "recipe", "headline", "question", "video", "joke", "quote", "song", "deal", "tip", "trick",
        "game", "poem", "fact", "puzzle", "photo", "review"))),
    "bullet_menu": ("bullet_lines", "en", _MENU),
    "teaser_list": ("ellipsis_lines", "en", "\n".join((
        "Latest stories from around the region, updated every hour.",
        "Local bakery wins national award for the third year in a row after judges praised its rye bread and…",
        "Council to review parking charges in the town centre following a wave of complaints from traders who say…",
        "Heavy rain is expected across the north of the county this weekend, with forecasters warning that rivers…",
        "A new footbridge over the canal will open next month, giving walkers and cyclists a safer route to the…",
        "Police are appealing for witnesses after a van was stolen from a driveway on Church Road early on Sunday and…",
        "The school choir has been invited to perform at the cathedral in December, the headteacher announced on…",
        "Read all of today's stories in our morning newsletter, sent free to subscribers every weekday."))),
    "price_table": ("low_alpha_words", "en", "Price list for the week, all figures in euros.\n" + "\n".join(
        f"{2019 + i % 5} Q{1 + i % 4} {1200 + 37 * i} {3.5 + i / 10:.2f} +{i % 7}.{i % 9}% {48 + i} {19.99 + i:.2f}" for i in range(14))),
    "keyword_list": ("few_stop_words", "en", "Cheap flights London Paris Rome Madrid Berlin Amsterdam Vienna Prague. "
                     "Hotel deals, last minute holidays, car hire, airport parking, travel insurance, city breaks, "
                     "beach resorts, ski chalets, cruise offers, family packages, luxury spas, weekend getaways, "
                     "budget hostels, boutique hotels, apartments, villas, cottages, camping, glamping, caravans. "
                     "Book now, best price guarantee, free cancellation, secure payment, instant confirmation, "
                     "customer reviews, loyalty rewards, exclusive discounts, gift vouchers, group bookings."),
    "copied_paragraphs": ("repeated_paragraphs", "en", "\n\n".join([
        GOOD_EN["recipe_bread"].split("\n\n")[0], GOOD_EN["history_printing"].split("\n\n")[0]] * 3)),
    "copied_paragraphs_zh": ("repeated_paragraphs", "zh", "\n\n".join([GOOD_OTHER["zh_story"][1].split("\n\n")[0]] * 3)),
    "forum_chrome": ("repeated_lines", "en", _FORUM_THREAD),
    "keyword_spam": ("repeated_ngrams", "en", " ".join(
        f"Looking for cheap hotels in Paris? {s} Cheap hotels in Paris, cheap hotels in Paris: the best way to save money." for s in (
            "Our site compares every offer.", "We check prices daily.", "Families love the choice.",
            "Students save the most.", "Book early to get the best rooms.", "Weekend deals are updated often.",
            "Many rooms have a view.", "Breakfast is often included."))),
    "spun_one_line": ("repeated_ngrams", "en", " ".join(
        f"{opener}, the quality of our plumbing service in the greater Manchester area is second to none and we are available around the clock."
        for opener in ("Today", "As always", "Call now", "Remember", "Trust us", "In short"))),
    "cookie_page": ("boilerplate_lines", "en", "\n".join((
        "Welcome to the online home of the Riverside Community Garden, a volunteer project since 2004.",
        "This website uses cookies to improve your experience and to analyse our traffic.",
        "By continuing to browse the site you agree to our use of cookies and our privacy policy.",
        "Please enable JavaScript in your browser settings to view the interactive map of our plots.",
        "Read our terms of use before posting in the members' area of the site, please.",
        "We meet every Saturday morning at the gate on Mill Lane and new helpers are always welcome to join us.",
        "Manage your cookie preferences at any time from the link at the bottom of each page."))),
    "headline_list": ("few_sentences", "en", "\n".join((
        "The best way to cook rice in a pan without it sticking",
        "Why the price of coffee is rising again this year",
        "How to choose a good pair of running shoes for the winter",
        "Ten things to do with the children in the school holidays",
        "What the new rules on recycling mean for your household",
        "A guide to the quietest beaches on the south coast",
        "The history of the bicycle in twelve remarkable photographs",
        "Where to find the best fish and chips in the county",
        "How a small village saved its only shop from closing"))),
    "run_on": ("few_sentences", "en", "Our company has been providing quality solutions to customers across the region for over twenty years "
               "and with a team of dedicated professionals who care about the work that they do and the people that they "
               "serve we are proud to offer a wide range of services to homes and businesses of every size from small repairs "
               "to complete renovations and we look forward to hearing from you soon."),
}


def _reason(text: str, language: str | None = "en", settings: TextFilterSettings = SETTINGS) -> str | None:
    verdict = text_verdict(text, language, settings)
    return verdict and verdict[0]


def _corpus() -> list[tuple[str, str | None, str | None, str]]:
    """(name, expected reason or None, language, text) for the whole planted set."""
    docs = [(name, None, "en", text) for name, text in GOOD_EN.items()]
    docs += [(name, None, lang, text) for name, (lang, text) in GOOD_OTHER.items()]
    docs += [(name, reason, lang, text) for name, (reason, lang, text) in PLANTED.items()]
    return docs


def test_good_documents_survive():
    for name, text in GOOD_EN.items():
        assert 80 <= len(text.split()) <= 300, name
        assert text_verdict(text, "en", SETTINGS) is None, (name, text_verdict(text, "en", SETTINGS))
        assert text_verdict(text, None, SETTINGS) is None, name
    for name, (language, text) in GOOD_OTHER.items():
        assert text_verdict(text, language, SETTINGS) is None, (name, text_verdict(text, language, SETTINGS))


def test_each_planted_document_names_its_reason():
    for name, (reason, language, text) in PLANTED.items():
        assert _reason(text, language) == reason, (name, text_verdict(text, language, SETTINGS))


def test_precision_and_recall_per_rule_on_the_planted_set():
    docs = _corpus()
    predicted = {name: _reason(text, lang) for name, _, lang, text in docs}
    reasons = sorted({expected for _, expected, _, _ in docs if expected})
    assert set(reasons) == {"too_short", "lorem_ipsum", "curly_braces", "bad_mean_word_length", "symbol_ratio",
                            "bullet_lines", "ellipsis_lines", "low_alpha_words", "few_stop_words",
                            "repeated_paragraphs", "repeated_lines", "repeated_ngrams", "boilerplate_lines",
                            "few_sentences"}  # too_long is checked with its own thresholds below
    print(f"\n{'rule':<22}{'planted':>8}{'dropped':>8}{'precision':>10}{'recall':>8}")
    for reason in reasons + [None]:
        actual = {name for name, expected, _, _ in docs if expected == reason}
        flagged = {name for name, got in predicted.items() if got == reason}
        precision = len(actual & flagged) / len(flagged) if flagged else 0.0
        recall = len(actual & flagged) / len(actual)
        print(f"{reason or 'kept':<22}{len(actual):>8}{len(flagged):>8}{precision:>10.2f}{recall:>8.2f}")
        assert precision == recall == 1.0, (reason, sorted(actual ^ flagged))


def test_too_long_by_words_and_by_bytes():
    book = "\n\n".join([GOOD_EN["history_printing"]] * 800)  # ~111,000 words: too long before it is repetitive
    reason, detail = text_verdict(book, "en", SETTINGS)
    assert reason == "too_long" and detail.endswith("words > 100000"), detail
    small = TextFilterSettings.from_profile({**default_text_filter_section(), "max_bytes": 500})
    assert _reason(GOOD_EN["history_printing"], settings=small) == "too_long"
    assert _reason(GOOD_OTHER["zh_history"][1], "zh", small) == "too_long"  # 3 bytes a character
    few_words = TextFilterSettings.from_profile({**default_text_filter_section(), "max_words": 100})
    assert _reason(GOOD_OTHER["zh_history"][1], "zh", few_words) == "too_long"  # > 200 characters


def test_no_space_languages_are_not_judged_by_whitespace_words():
    text = GOOD_OTHER["zh_history"][1]
    assert _reason(text, "zh") is None and _reason(text, "ja") is None
    assert _reason(text, "en") == "too_short"  # a handful of whitespace "words"
    numbers = "。".join(f"{2000 + i}年：{i * 37 % 1000}，{i * 53 % 997}，{i * 11}%" for i in range(12)) + "。"
    assert _reason(numbers, "zh") == "low_alpha_words"
    assert _reason(GOOD_OTHER["de_news"][1], "de") is None  # English stop words are not asked of German
    assert _reason(GOOD_OTHER["de_news"][1], "en") == "few_stop_words"
    japanese = ("東京は日本の首都であり、世界でも有数の大都市である。江戸時代には江戸と呼ばれ、徳川幕府が置かれていた。"
                "明治維新の後、天皇が京都から移り住み、名前も東京に改められた。現在では約千四百万人が暮らし、"
                "政治や経済、文化の中心として重要な役割を果たしている。")
    assert _reason(japanese, "ja") is None
    # Thai vowel signs and tone marks are combining marks, not letters to str.isalpha: they must count as letters.
    thai = ("กรุงเทพมหานครเป็นเมืองหลวงและเมืองที่มีประชากรมากที่สุดของประเทศไทย เป็นศูนย์กลางการปกครอง การศึกษา "
            "การคมนาคมขนส่ง การเงินการธนาคาร การพาณิชย์ การสื่อสาร และความเจริญของประเทศ "
            "ตั้งอยู่บนสามเหลี่ยมปากแม่น้ำเจ้าพระยา มีแม่น้ำเจ้าพระยาไหลผ่านและแบ่งเมืองออกเป็นสองฝั่ง")
    assert sum(not c.isalpha() for c in thai if not c.isspace()) / len(thai) > 0.1
    assert _reason(thai, "th") is None


def test_stop_word_rule_follows_the_profile():
    keywords = PLANTED["keyword_list"][2]
    assert _reason(keywords, "en") == "few_stop_words"
    assert _reason(keywords, None) == "few_stop_words"  # unidentified text is held to English
    assert _reason(keywords, "nl") != "few_stop_words"
    off = TextFilterSettings.from_profile({**default_text_filter_section(), "stop_word_languages": []})
    assert _reason(keywords, "en", off) != "few_stop_words"


def test_tolerances_beyond_c4():
    """One cookie footer, one formula and one Wikipedia citation do not cost a good page."""
    text = GOOD_EN["news_bike_lanes"] + "\n\nThis site uses cookies. Read our privacy policy."
    assert _reason(text) is None
    assert _reason(GOOD_EN["wiki_pythagoras"]) is None
    strict = TextFilterSettings.from_profile({**default_text_filter_section(), "max_curly_brace_word_ratio": 0})
    assert _reason(GOOD_EN["wiki_pythagoras"], settings=strict) == "curly_braces"  # C4 proper
    dialogue = "\n".join(["— Bonjour, dit-elle en posant son panier sur la table de la cuisine.",
                          "— Tu rentres bien tard ce soir, répondit sa mère sans lever les yeux de son livre.",
                          "— Il y avait un monde fou au marché, et le bus est arrivé avec une demi-heure de retard.",
                          "— Tu aurais pu prendre ton vélo, comme tout le monde dans ce village.",
                          "— Avec ce vent-là ? Certainement pas, je serais arrivée demain matin."])
    assert _reason(dialogue, "fr") is None  # dialogue dashes are not bullets


def _datatrove_duplicate_chars(words: list[str], n: int) -> int:
    """datatrove's find_all_duplicate, verbatim in spirit: the reference for the candidate-only scan."""
    unique, chars, idx = set(), 0, 0
    while idx < len(words) - n + 1:
        gram = tuple(words[idx:idx + n])
        if gram in unique:
            chars += sum(map(len, gram))
            idx += n
        else:
            unique.add(gram)
            idx += 1
    return chars


def test_ngram_helpers_match_the_reference():
    rng = random.Random(0)
    for trial in range(200):
        vocabulary = [f"w{i}" for i in range(rng.randint(1, 6))]
        words = [rng.choice(vocabulary) for _ in range(rng.randint(0, 60))]
        for n in range(2, 11):
            assert duplicate_ngram_chars(words, n) == _datatrove_duplicate_chars(words, n), (words, n)
    assert top_ngram_chars("a b a b a b".split(), 2) == 3 * 3
    assert top_ngram_chars("one two three".split(), 2) == 0  # seen once is not repetition
    assert top_ngram_chars([], 2) == 0


def test_settings_reject_unknown_and_missing_keys():
    with pytest.raises(ValueError, match=r"text.yaml filters: unknown key\(s\) \['min_word'\]"):
        TextFilterSettings.from_profile({**default_text_filter_section(), "min_word": 3}, "text.yaml filters")
    section = default_text_filter_section()
    del section["max_lorem_ipsum"]
    with pytest.raises(ValueError, match=r"missing key\(s\) \['max_lorem_ipsum'\]"):
        TextFilterSettings.from_profile(section)
    assert SETTINGS.stop_word_languages == ("en",) and isinstance(SETTINGS.max_bytes, int)
