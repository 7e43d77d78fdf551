"""Saved web pages: the main content is indexed with its title and headings; menus, banners and footers are not."""

from __future__ import annotations

import pytest

from rag import loaders
from rag.loaders.web import html_sections, page_sections

BOILERPLATE = ("We use cookies", "Accept all cookies", "Shop our hive range", "Beekeeping Supplies Ltd",
               "Privacy policy", "Subscribe to our newsletter", "Most read this week")


def saved_page(article: str, title: str = "Keeping bees in a city garden") -> str:
    """A page as a browser saves it: a cookie banner, a header with the site name and menu, a sidebar and a footer."""
    menu = "".join(f'<li><a href="/{w.lower()}">{w}</a></li>' for w in ("Home", "Shop our hive range", "Courses", "Contact"))
    return f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<script>window.analytics = "do not index";</script><style>.x {{color: red}}</style></head><body>
<div id="cookie-banner" class="cookie-consent"><p>We use cookies to give you the best experience.</p><button>Accept all cookies</button></div>
<header class="site-header"><h1 class="logo">Hive and Home</h1><nav class="main-nav"><ul>{menu}</ul></nav></header>
<main><article>{article}</article></main>
<aside class="sidebar"><h3>Most read this week</h3><p>Subscribe to our newsletter for monthly tips.</p></aside>
<footer class="site-footer"><p>Beekeeping Supplies Ltd, 4 Orchard Road.</p><a href="/privacy">Privacy policy</a></footer>
</body></html>"""


ARTICLE = """<h1>Keeping bees in a city garden</h1>
<p>A single hive fits on a flat roof or at the end of a narrow garden, as long as the bees fly up and away from
the neighbours. A hedge or a two metre screen in front of the entrance makes them climb at once.</p>
<h2>Choosing a hive</h2><p>A national hive is the common size here; its frames are easy to buy and swap with other
keepers. Start with one colony bought as a nucleus in early summer, so that it can build up before autumn.</p>
<h2>Feeding in winter</h2><p>Leave the colony twenty kilograms of honey for the winter. If the hive feels light in
October, give fondant above the crown board rather than syrup, which they cannot dry in the cold.</p>"""


def all_text(sections: list[tuple[str, str]]) -> str:
    return " ".join(f"{heading} {body}" for heading, body in sections)


def test_saved_page_keeps_the_article_and_headings_without_banner_menu_sidebar_or_footer(tmp_path):
    path = tmp_path / "bees.html"
    path.write_text(saved_page(ARTICLE), encoding="utf-8")
    sections = loaders.load(path)
    assert [s.heading for s in sections] == ["Keeping bees in a city garden", "Keeping bees in a city garden > Choosing a hive",
                                             "Keeping bees in a city garden > Feeding in winter"]
    assert sections[0].text.startswith("A single hive fits on a flat roof")
    assert "swap with other keepers" in sections[1].text and "fondant above the crown board" in sections[2].text
    text = all_text([(s.heading, s.text) for s in sections])
    for words in BOILERPLATE + ("Hive and Home", "Courses", "do not index", "color"):
        assert words not in text, words
    # the old reader, which every page went through before, keeps all of it
    assert all(words in all_text(html_sections(path.read_text())) for words in BOILERPLATE)


def test_the_title_heads_the_text_before_the_first_heading():
    article = """<p class="lead">Swarms are a colony splitting in two, and they are rarely dangerous.</p>
        <h2>Catching a swarm</h2><p>Shake the cluster into a box and leave it open until the evening.</p>"""
    sections = page_sections(saved_page(article, title="What to do about a swarm"))
    assert sections == [("What to do about a swarm", "Swarms are a colony splitting in two, and they are rarely dangerous."),
                        ("Catching a swarm", "Shake the cluster into a box and leave it open until the evening.")]


def test_page_without_furniture_keeps_all_its_text():
    # A generated help page: no menu, header, footer or banner, so every line of it is content.
    page = """<html><head><title>tool help</title></head><body><p>Version 2.1 of the tool.</p>
        <h1>Using the tool</h1><p>Press start.</p><h2>Options</h2><ul><li>-v prints more</li><li>-q prints less</li></ul>
        <table><tr><td>exit 0</td><td>success</td></tr></table></body></html>"""
    sections = page_sections(page)
    assert sections == html_sections(page)
    assert sections == [("tool help", "Version 2.1 of the tool."), ("Using the tool", "Press start."),
                        ("Using the tool > Options", "-v prints more\n\n-q prints less\n\nexit 0 | success")]


def test_fragment_falls_back_without_losing_text():
    # No <html>: trafilatura's loader refuses it as not quite HTML, so the plain reader reads it.
    fragment = "<p>Queen cells hang like peanuts.</p><h2>Marking</h2><p>A dot of paint on the thorax.</p>"
    assert page_sections(fragment) == html_sections(fragment) == [
        ("", "Queen cells hang like peanuts."), ("Marking", "A dot of paint on the thorax.")]
    assert page_sections("just words, no markup at all") == [("", "just words, no markup at all")]


@pytest.mark.parametrize("failure", ["nothing", "error"])
def test_page_where_trafilatura_finds_nothing_or_fails_is_read_whole(monkeypatch, failure):
    import trafilatura

    def extract(*args, **kwargs):
        if failure == "error":
            raise RecursionError("maximum recursion depth exceeded")
        return None

    monkeypatch.setattr(trafilatura, "bare_extraction", extract)
    page = saved_page(ARTICLE)
    assert page_sections(page) == html_sections(page)
    assert "fondant above the crown board" in all_text(page_sections(page))


def test_page_nested_deeper_than_lxml_reads_keeps_its_text():
    # libxml2 stops at 256 levels and drops the rest of the page; the plain reader has no such limit.
    page = ("<html><body><nav>menu</nav>" + "<div>" * 300 + "<p>deep words</p>" + "</div>" * 300
            + "<h2>After</h2><p>after the nesting</p></body></html>")
    text = all_text(page_sections(page))
    assert "deep words" in text and "after the nesting" in text


def test_hidden_and_template_text_stay_out_of_the_main_content():
    article = ARTICLE + '<div hidden>hidden note to editors</div><template><p>template placeholder text</p></template>'
    text = all_text(page_sections(saved_page(article)))
    assert "fondant" in text
    assert "hidden note" not in text and "template placeholder" not in text


def test_inline_code_stays_in_its_sentence_and_tables_keep_their_cells():
    article = ARTICLE + """<h2>Records</h2><p>Run <code>hivelog add</code> after each inspection, then check the totals.</p>
        <pre>hivelog add --hive 1
hivelog total</pre>
        <table><tr><th>Hive</th><th>Honey</th></tr><tr><td>North</td><td>12 kg</td></tr><tr><td>South</td><td>9 kg</td></tr></table>"""
    records = dict(page_sections(saved_page(article)))["Keeping bees in a city garden > Records"]
    assert "Run hivelog add after each inspection, then check the totals." in records.split("\n\n")
    assert "North | 12 kg" in records and "South | 9 kg" in records


def test_page_without_a_content_frame_keeps_its_headings():
    # DocBook XSL's markup: navigation tables around a chapter that no landmark or class marks as content.
    # trafilatura then gathers the loose paragraphs and drops every heading; the page is read whole instead.
    import trafilatura

    parts = "".join(f'<div class="section"><div class="titlepage"><div><div><h2 class="title">{n}. Part {n}</h2></div></div>'
                    f'</div><p>Words about part {n} of the chapter, long enough to read as prose.</p></div>' for n in range(1, 5))
    page = f"""<html><head><title>Chapter 3</title></head><body>
        <div class="navheader"><table><tr><td><a href="ch2.html">Prev</a></td><td><a href="ch4.html">Next</a></td></tr></table></div>
        <div class="chapter"><div class="titlepage"><div><div><h1 class="title">Chapter 3. Parts</h1></div></div></div>{parts}</div>
        <div class="navfooter"><table><tr><td>Chapter 2. Before</td><td><a href="index.html">Home</a></td></tr></table></div>
        </body></html>"""
    extracted = trafilatura.bare_extraction(page, favor_recall=True)
    assert "Part 1" not in " ".join(extracted.body.itertext())  # what this guards against
    sections = page_sections(page)
    assert [heading for heading, _ in sections][1:] == [f"Chapter 3. Parts > {n}. Part {n}" for n in range(1, 5)]
    assert all(f"Words about part {n}" in sections[n][1] for n in range(1, 5))


def test_loading_a_saved_page_reads_it_from_disk_by_suffix(tmp_path):
    path = tmp_path / "bees.htm"
    path.write_bytes(saved_page(ARTICLE).encode("utf-8"))
    assert "Accept all cookies" not in all_text([(s.heading, s.text) for s in loaders.load(path)])
