"""Regenerate docs/warranty-and-safety.pdf, the demo's text PDF (three pages, with an outline).

Run: python serving/knowledge/demo/build_warranty_pdf.py   (needs fpdf2; the PDF is committed)
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from fpdf import FPDF

# Chapter (one page each) → sections of (heading, body). Bodies are one paragraph each.
PAGES: dict[str, dict[str, str]] = {
    "Safety": {
        "Where to use Glow": (
            "Kestrel Glow (model KG-2) is rated IP20: use it indoors in dry locations only. "
            "Do not use it outdoors, in bathrooms, in enclosed fittings without ventilation, "
            "or with a wall dimmer switch. Operating temperature: 0 to 40 degrees Celsius."
        ),
        "Electrical safety": (
            "Switch off the power before fitting or removing the lamp. The lamp runs on "
            "220-240 V AC, 50/60 Hz. Do not open the lamp: it contains no user-serviceable "
            "parts. A lamp that has been dropped or shows cracks must not be used again."
        ),
        "Cleaning": (
            "Switch the lamp off and let it cool for 10 minutes. Wipe it with a dry, soft "
            "cloth. Do not use water, sprays or solvents."
        ),
    },
    "Warranty": {
        "Warranty period": (
            "Kestrel Lighting warrants Glow lamps and the Perch hub against defects in "
            "materials and workmanship for two (2) years from the date of purchase, or three "
            "(3) years when the product is registered in the Kestrel Home app within 90 days "
            "of purchase. Keep your receipt as proof of purchase."
        ),
        "What the warranty does not cover": (
            "The warranty does not cover damage from moisture, use with wall dimmers, power "
            "surges, accidents, opening the product, or normal wear of the finish."
        ),
        "How to make a claim": (
            "Open Help > Warranty claim in the app, or write to support with the serial "
            "number and your receipt. We replace a faulty lamp or hub; we do not repair them. "
            "Replacements are shipped within 5 working days."
        ),
    },
    "Returns and specifications": {
        "Returns": (
            "Products bought directly from Kestrel Lighting can be returned within 30 days of "
            "delivery for a full refund, in their original packaging. Return shipping is free "
            "within the EU and the UK. Products bought from a retailer are returned to the "
            "retailer."
        ),
        "Technical specifications": (
            "Power: 9 W (60 W equivalent). Light output: 806 lumens at 2700 K. Colour "
            "temperature: 2200 to 6500 K, plus 16 million colours. Base: E27. Rated life: "
            "25,000 hours. Standby power: under 0.4 W. Radio: 2.4 GHz mesh to the Perch hub. "
            "Perch hub: USB-C 5 V power, Wi-Fi 2.4 GHz 802.11 b/g/n, Ethernet 100 Mbit/s."
        ),
    },
}


def build(path: Path) -> None:
    """Write the demo warranty-and-safety PDF to `path`."""
    pdf = FPDF(format="A4")
    pdf.set_title("Kestrel Glow - Warranty and safety")
    pdf.set_author("Kestrel Lighting (fictional)")
    pdf.set_creation_date(datetime(2025, 3, 1, tzinfo=UTC))
    pdf.set_margins(20, 20, 20)
    for chapter, sections in PAGES.items():
        pdf.add_page()
        pdf.start_section(chapter, level=0)
        pdf.set_font("Helvetica", "B", 18)
        pdf.cell(0, 12, chapter, new_x="LMARGIN", new_y="NEXT")
        for heading, body in sections.items():
            pdf.start_section(heading, level=1)
            pdf.set_font("Helvetica", "B", 13)
            pdf.cell(0, 10, heading, new_x="LMARGIN", new_y="NEXT")
            pdf.set_font("Helvetica", "", 11)
            pdf.multi_cell(0, 6, body, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(4)
    pdf.output(str(path))


if __name__ == "__main__":
    build(Path(__file__).parent / "docs" / "warranty-and-safety.pdf")
