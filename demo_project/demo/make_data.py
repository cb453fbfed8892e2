"""Regenerates the demo's sample files (day 1 and day 2): ``python -m demo_project.demo.make_data``.

Seeded, so the files and the demo's output are the same on every machine.
"""

import csv
import json
import random
from datetime import date, timedelta
from pathlib import Path

from openpyxl import Workbook

DATA = Path(__file__).parent / "data"
CATEGORIES = [
    ("BOOK", "Books"),
    ("TOY", "Toys"),
    ("GAME", "Games"),
    ("HOME", "Home"),
    ("FOOD", "Food"),
]
DEPARTMENTS = [("ENG", "Engineering"), ("OPS", "Operations"), ("SAL", "Sales"), ("FIN", "Finance")]
WORDS = "red blue green small large deluxe classic travel pocket family wooden steel".split()
NOUNS = "lamp puzzle novel kettle robot chess atlas teapot kite yo-yo cookbook blanket".split()
FIRST = "Ada Alan Grace Linus Margaret Ken Barbara Dennis Frances Edsger Radia Tim".split()
LAST = "Lovelace Turing Hopper Torvalds Hamilton Thompson Liskov Ritchie Allen Dijkstra".split()


def products(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for i in range(1, n + 1):
        rows.append(
            {
                "sku": f"SKU-{i:05d}",
                "name": f"{rng.choice(WORDS).title()} {rng.choice(NOUNS)}",
                "price": f"{rng.randint(100, 9999) / 100:.2f}",
                "qty": rng.randint(0, 500),
                "category_code": rng.choice(CATEGORIES)[0],
                "updated": (date(2026, 1, 1) + timedelta(days=rng.randint(0, 300))).isoformat(),
                "active": rng.choice(["yes", "yes", "yes", "no"]),
            }
        )
    return rows


def employees(rng: random.Random) -> list[dict]:
    rows = []
    for dept, _ in DEPARTMENTS:
        for number in range(1, 9):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            rows.append(
                {
                    "dept": dept,
                    "number": number,
                    "name": f"{first} {last}",
                    "email": f"{first}.{last}{number}@Example.com",
                    "hired": (date(2015, 1, 1) + timedelta(days=rng.randint(0, 3500))).strftime(
                        "%d/%m/%Y"
                    ),
                    "salary": rng.randint(3000, 9000) * 10,
                    "status": rng.choice(["Active", "Active", "On leave"]),
                    "last_login": (
                        f"2026-11-{rng.randint(1, 20):02d} {rng.randint(7, 19):02d}:15:00"
                    ),
                }
            )
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_xlsx(path: Path, rows: list[tuple]) -> None:
    book = Workbook()
    sheet = book.active
    sheet.title = "departments"
    sheet.append(["code", "name"])
    for row in rows:
        sheet.append(list(row))
    book.save(path)


def main() -> None:
    rng = random.Random(2026)
    day1 = products(rng, 200)
    day2 = [dict(r) for r in day1]
    for r in rng.sample(day2, 6):  # price and stock changes
        r["price"] = f"{float(r['price']) * 1.1:.2f}"
        r["qty"] = int(r["qty"]) + 7
    removed = {r["sku"] for r in rng.sample(day2, 3)}
    day2 = [r for r in day2 if r["sku"] not in removed]
    day2 += products(random.Random(7), 204)[200:]  # four new products
    for r in day2[-4:]:
        r["sku"] = r["sku"].replace("SKU-", "NEW-")
    write_csv(DATA / "categories.csv", [{"code": c, "name": n} for c, n in CATEGORIES])
    write_csv(
        DATA / "day2" / "categories.csv",
        [{"code": c, "name": n} for c, n in CATEGORIES] + [{"code": "GARDEN", "name": "Garden"}],
    )
    write_csv(DATA / "products.csv", day1)
    write_csv(DATA / "day2" / "products.csv", day2)
    write_xlsx(DATA / "departments.xlsx", DEPARTMENTS)
    write_xlsx(
        DATA / "day2" / "departments.xlsx",
        [(c, "Sales & Marketing" if c == "SAL" else n) for c, n in DEPARTMENTS],
    )
    staff = employees(rng)
    (DATA / "employees.json").write_text(json.dumps(staff, indent=1) + "\n")
    staff2 = [dict(r) for r in staff if not (r["dept"] == "OPS" and r["number"] == 8)]
    staff2[0]["status"] = "Left"
    staff2[1]["salary"] += 2500
    staff2.append(
        {
            **staff[-1],
            "number": 9,
            "name": "Katherine Johnson",
            "email": "katherine.johnson@example.com",
        }
    )
    (DATA / "day2" / "employees.json").write_text(json.dumps(staff2, indent=1) + "\n")


if __name__ == "__main__":
    main()
