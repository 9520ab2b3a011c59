#!/usr/bin/env bash
# Fuzz every parser and translator with cargo-fuzz (libFuzzer + ASan):
# the X-Tally-Signature header and canonical bodies, each platform's
# webhooks, canonical events, admin bodies and pricing policies
# (fuzz/fuzz_targets/). Seeds come from tests/events/; a crash fails the run
# and leaves its input under fuzz/artifacts/<target>/ (turn it into a unit
# test beside the code it broke, as tally.rs and shopware.rs did).
#
#   infra/fuzz.sh [seconds per target, default 10] [target...]
#
# The test command runs 10 s of each; the documented long run is
# `infra/fuzz.sh 60` (or more). cargo-fuzz is installed under .emulators/
# if missing. It needs sanitizer flags that only nightly accepts; on the
# machine's stable toolchain RUSTC_BOOTSTRAP=1 allows them for this build.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
seconds="${1:-10}"
shift || true
EMU="${TALLY_EMULATORS:-$ROOT/.emulators}"
export PATH="$EMU/bin:$PATH" RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz 0.13.2 into $EMU/bin" >&2
  cargo install --quiet --locked --root "$EMU" cargo-fuzz --version 0.13.2
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd fuzz && cargo fuzz list)
fi

# Seeds: the fixtures, framed as each target reads its input (first byte:
# topic and whether the body is correctly signed; a header line; the body).
corpus="$ROOT/fuzz/corpus"
python3 - "$ROOT" "$corpus" <<'PY'
import json, os, pathlib, sys
root, corpus = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
events = root / "tests" / "events"
def put(target, name, data):
    d = corpus / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)
canonical = [
    {"id": "c1", "type": "stock.counted", "occurred_at": "2026-12-03T10:00:00Z",
     "data": {"sku": "TSHIRT-M", "location": "WH-AMS", "on_hand": 10}},
    {"id": "a1", "type": "stock.adjusted", "occurred_at": "2026-12-03T10:00:00Z",
     "data": {"sku": "TSHIRT-M", "location": "WH-AMS", "delta": -2, "reason": "broken"}},
    {"id": "o1", "type": "order.placed", "occurred_at": "2026-12-03T10:00:00Z",
     "data": {"order_id": "1001", "channel": "erp", "currency": "EUR",
              "lines": [{"sku": "TSHIRT-M", "qty": 2, "unit_price": "19.99"}]}},
    {"id": "x1", "type": "order.cancelled", "occurred_at": "2026-12-03T10:00:00Z",
     "data": {"order_id": "1001", "reason": "customer"}},
    {"id": "p1", "type": "price.competitor_observed", "occurred_at": "2026-12-03T10:00:00Z",
     "data": {"sku": "TSHIRT-M", "competitor": "acme", "price": "18.50", "currency": "EUR"}},
    {"id": "k1", "type": "product.cost_changed", "occurred_at": "2026-12-03T10:00:00Z",
     "data": {"sku": "TSHIRT-M", "unit_cost": "9.10", "currency": "EUR"}},
]
for i, e in enumerate(canonical):
    put("canonical_event", f"seed{i}", json.dumps(e).encode())
put("tally_signature", "array", b"t=1796292000,v1=" + b"0" * 64 + b"\n" + json.dumps(canonical).encode())
put("tally_signature", "one", b"t=1796292000,v1=00,v1=ff\n" + json.dumps(canonical[2]).encode())
topics = {
    "shopify_webhook": ["orders_create", "orders_updated", "orders_cancelled", "orders_fulfilled",
                        "refunds_create", "inventory_levels_update"],
    "woocommerce_webhook": ["order_created", "order_updated", "order_deleted", "product_updated"],
}
for target, names in topics.items():
    folder = events / target.split("_")[0]
    for f in sorted(folder.glob("*.json")):
        stem = f.stem.replace("_large", "").replace("_cancelled", "").replace("_completed", "").replace("_refunded", "")
        index = names.index(stem) if stem in names else 0
        put(target, f.stem, bytes([index]) + b"\n" + f.read_bytes())
for f in sorted((events / "shopware").glob("*.json")):
    put("shopware_webhook", f.stem, b"\x00\n" + f.read_bytes())
admin = [
    (0, {"platform": "shopify", "secret": "0123456789abcdef0123", "channel": "shop",
         "api": {"base_url": "https://shop.example", "access_token": "shpat_x", "location_id": "1"}}),
    (1, {"aliases": ["shopify:71234567890", "woocommerce:main"]}),
    (2, {"currency": "EUR", "unit_cost": "10.00", "price": "19.99", "safety_stock": 2,
         "channel_buffers": {"webshop": 3}, "aliases": ["shopify:39072856"],
         "policy": {"min_margin_pct": "20", "max_price": "29.99", "max_step_pct": "5"}}),
]
for which, body in admin:
    put("admin_bodies", f"seed{which}", bytes([which]) + json.dumps(body).encode())
put("pricing_policy", "seed", json.dumps({"min_margin_pct": "20", "min_price": "12.00", "max_price": "29.99",
    "max_step_pct": "5", "fuzz_unit_cost": "10.00"}).encode())
PY

(cd fuzz && cargo fuzz build)
failed=0
for t in "${targets[@]}"; do
  printf '\n==> fuzz %s for %ss\n' "$t" "$seconds"
  mkdir -p "fuzz/corpus/$t"
  if ! (cd fuzz && cargo fuzz run "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>"$ROOT/fuzz/$t.log"); then
    echo "fuzz $t FAILED; its log:" >&2
    tail -n 60 "$ROOT/fuzz/$t.log" >&2
    failed=1
  else
    grep -E '^stat::number_of_executed_units|^Done ' "$ROOT/fuzz/$t.log" | tail -n 2
  fi
done
exit "$failed"
