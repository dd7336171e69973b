"""The example pipeline's compute: generated orders, features, a demand model (pandas/numpy only).

Everything is deterministic per partition date, so a re-run of a day produces the same data and
the same outputs (what makes pre-executed work reusable). `scale` multiplies data sizes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html

import numpy as np
import pandas as pd

N_PRODUCTS = 120
N_CUSTOMERS = 4000
BASE_ORDERS = 60_000          # orders per day at scale 1
HISTORY_DAYS = 28             # window pulled from the source by features and full refresh
CHANNELS = np.array(["web", "app", "store", "partner"])


def day(partition_key: str) -> dt.date:
    return dt.date.fromisoformat(partition_key)


def is_full_refresh_day(partition_key: str) -> bool:
    """Weekends rebuild the customer snapshot from the full history; weekdays append a delta."""
    return day(partition_key).weekday() >= 5


def _rng(date: dt.date, salt: str) -> np.random.Generator:
    seed = int.from_bytes(hashlib.sha256(f"{date.isoformat()}:{salt}".encode()).digest()[:8], "big")
    return np.random.default_rng(seed)


def generate_orders(date: dt.date, scale: float) -> pd.DataFrame:
    """One day of raw orders from the 'source system', with duplicates, returns and missing prices."""
    rng = _rng(date, "orders")
    weekend = date.weekday() >= 5
    n = max(50, int(BASE_ORDERS * scale * (0.6 if weekend else 1.0) * rng.uniform(0.85, 1.15)))
    popularity = _rng(dt.date(2000, 1, 1), "popularity").dirichlet(np.full(N_PRODUCTS, 0.7))
    product = rng.choice(N_PRODUCTS, size=n, p=popularity)
    base_price = 5 + (np.arange(N_PRODUCTS) * 7.3) % 95
    price = base_price[product] * rng.lognormal(0, 0.08, n)
    price[rng.random(n) < 0.01] = np.nan
    quantity = rng.poisson(2.0 if weekend else 1.4, n) + 1
    quantity[rng.random(n) < 0.02] *= -1                       # returns
    frame = pd.DataFrame({
        "order_id": np.arange(n, dtype=np.int64) + int(date.strftime("%Y%m%d")) * 1_000_000,
        "customer_id": rng.integers(0, N_CUSTOMERS, n),
        "product_id": product,
        "quantity": quantity,
        "unit_price": price,
        "second_of_day": rng.integers(0, 86_400, n),
        "channel": CHANNELS[rng.integers(0, len(CHANNELS), n)],
    })
    dupes = frame.sample(frac=0.01, random_state=int(rng.integers(1 << 31)))
    frame = pd.concat([frame, dupes], ignore_index=True)
    frame["order_date"] = pd.Timestamp(date)
    return frame


def clean_orders(raw: pd.DataFrame) -> pd.DataFrame:
    """Drop duplicates and returns, impute missing prices by product median, add revenue and hour."""
    frame = raw.drop_duplicates("order_id").copy()
    frame = frame[frame["quantity"] > 0]
    medians = frame.groupby("product_id")["unit_price"].transform("median")
    frame["unit_price"] = frame["unit_price"].fillna(medians).fillna(frame["unit_price"].median())
    frame["revenue"] = frame["quantity"] * frame["unit_price"]
    frame["hour"] = frame["second_of_day"] // 3600
    return frame.reset_index(drop=True)


def history(date: dt.date, scale: float, days: int = HISTORY_DAYS) -> pd.DataFrame:
    """Cleaned orders of the `days` days before `date` (inclusive), pulled from the source again."""
    frames = [clean_orders(generate_orders(date - dt.timedelta(days=i), scale)) for i in range(days)]
    return pd.concat(frames, ignore_index=True)


def customer_snapshot(orders: pd.DataFrame, as_of: dt.date) -> pd.DataFrame:
    """Per-customer totals, order counts, recency and favourite channel."""
    grouped = orders.groupby("customer_id")
    snap = pd.DataFrame({
        "orders": grouped["order_id"].count(),
        "revenue": grouped["revenue"].sum().round(2),
        "units": grouped["quantity"].sum(),
        "last_order": grouped["order_date"].max(),
    })
    snap["days_since_last"] = (pd.Timestamp(as_of) - snap["last_order"]).dt.days
    channel = orders.groupby(["customer_id", "channel"]).size().unstack(fill_value=0)
    snap["top_channel"] = channel.idxmax(axis=1)
    snap["as_of"] = pd.Timestamp(as_of)
    return snap.reset_index()


def demand_features(date: dt.date, scale: float, today: pd.DataFrame) -> pd.DataFrame:
    """Daily demand per product over the history window with lags, rolling stats and weekday dummies.

    The target `next_units` is the next day's demand; the last day has no target (forecast rows).
    """
    past = history(date - dt.timedelta(days=1), scale, HISTORY_DAYS - 1)
    orders = pd.concat([past, today], ignore_index=True)
    daily = (orders.groupby(["product_id", "order_date"])["quantity"].sum()
             .unstack(fill_value=0).stack().rename("units").reset_index()
             .sort_values(["product_id", "order_date"]))
    by_product = daily.groupby("product_id")["units"]
    for lag in (1, 2, 7):
        daily[f"lag_{lag}"] = by_product.shift(lag)
    for window in (3, 7, 14):
        daily[f"mean_{window}"] = by_product.transform(lambda s, w=window: s.rolling(w, 1).mean())
        daily[f"std_{window}"] = by_product.transform(lambda s, w=window: s.rolling(w, 2).std())
    hourly = orders.pivot_table(index="product_id", columns="hour", values="quantity",
                                aggfunc="sum", fill_value=0)
    peak = (hourly.div(hourly.sum(axis=1).replace(0, 1), axis=0)).max(axis=1).rename("peak_share")
    daily = daily.merge(peak, left_on="product_id", right_index=True, how="left")
    weekday = daily["order_date"].dt.weekday
    for d in range(7):
        daily[f"dow_{d}"] = (weekday == d).astype(float)
    daily["next_units"] = by_product.shift(-1)
    return daily.fillna({c: 0.0 for c in daily.columns if c.startswith(("lag_", "std_"))}).reset_index(drop=True)


FEATURES = ["units", "lag_1", "lag_2", "lag_7", "mean_3", "std_3", "mean_7", "std_7", "mean_14",
            "std_14", "peak_share"] + [f"dow_{d}" for d in range(7)]


def _design(x: np.ndarray, omega: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Standardised inputs, their random Fourier features and an intercept."""
    rff = np.sqrt(2.0 / omega.shape[1]) * np.cos(x @ omega + phase)
    return np.hstack([x, rff, np.ones((len(x), 1))])


def train_demand_model(features: pd.DataFrame, scale: float, seed: int = 7) -> dict:
    """Ridge regression on the features and their random Fourier features, alpha chosen by 5-fold cross-validation.

    Cost grows with `scale` through the number of random features (a d x d solve per fold).
    """
    train = features.dropna(subset=["next_units"])
    x = train[FEATURES].to_numpy(float)
    y = train["next_units"].to_numpy(float)
    mu, sigma = x.mean(axis=0), x.std(axis=0) + 1e-9
    rng = np.random.default_rng(seed)
    dim = max(16, int(1200 * scale))
    omega = rng.normal(0, 0.5, (x.shape[1], dim))
    phase = rng.uniform(0, 2 * np.pi, dim)
    z = _design((x - mu) / sigma, omega, phase)
    folds = np.arange(len(z)) % 5
    alphas = [0.01, 0.1, 1.0, 10.0]
    rmse = {}
    for alpha in alphas:
        errors = []
        for k in range(5):
            tr, te = folds != k, folds == k
            coef = np.linalg.solve(z[tr].T @ z[tr] + alpha * np.eye(z.shape[1]), z[tr].T @ y[tr])
            errors.append(np.mean((z[te] @ coef - y[te]) ** 2))
        rmse[alpha] = float(np.sqrt(np.mean(errors)))
    best = min(rmse, key=rmse.get)
    coef = np.linalg.solve(z.T @ z + best * np.eye(z.shape[1]), z.T @ y)
    baseline = float(np.sqrt(np.mean((train["units"].to_numpy(float) - y) ** 2)))
    return {"mu": mu, "sigma": sigma, "omega": omega, "phase": phase, "coef": coef, "alpha": best,
            "cv_rmse": rmse[best], "naive_rmse": baseline, "n_train": int(len(z)), "dim": dim}


def forecast(model: dict, features: pd.DataFrame) -> pd.DataFrame:
    """Next-day units per product from the last day of the feature window."""
    last = features[features["order_date"] == features["order_date"].max()]
    x = (last[FEATURES].to_numpy(float) - model["mu"]) / model["sigma"]
    z = _design(x, model["omega"], model["phase"])
    pred = np.clip(z @ model["coef"], 0, None)
    out = pd.DataFrame({"product_id": last["product_id"].to_numpy(),
                        "units_today": last["units"].to_numpy(),
                        "forecast_units": pred.round(1)})
    return out.sort_values("forecast_units", ascending=False).reset_index(drop=True)


def render_report(fc: pd.DataFrame, partition_key: str, model_rmse: float) -> str:
    """A standalone HTML report: an SVG bar chart of the top products and the forecast table."""
    top = fc.head(20)
    peak = max(float(top["forecast_units"].max()), 1.0)
    bars = "".join(
        f'<rect x="{i * 30 + 5}" y="{200 - 190 * v / peak:.1f}" width="24" height="{190 * v / peak:.1f}" '
        f'fill="#4f43dd"><title>product {p}: {v}</title></rect>'
        for i, (p, v) in enumerate(zip(top["product_id"], top["forecast_units"]))
    )
    table = top.to_html(index=False, border=0)
    return (f"<html><head><meta charset='utf-8'><title>Demand forecast {html.escape(partition_key)}"
            f"</title></head><body><h1>Demand forecast for the day after {html.escape(partition_key)}</h1>"
            f"<p>Model CV RMSE: {model_rmse:.2f} units. Total forecast: {fc['forecast_units'].sum():.0f} units."
            f"</p><svg width='{len(top) * 30 + 10}' height='205'>{bars}</svg>{table}</body></html>")


def content_hash(value) -> str:
    """A stable SHA-256 of DataFrames, arrays, strings, scalars and lists/dicts of them (a data version)."""
    digest = hashlib.sha256()

    def feed(item) -> None:
        if isinstance(item, pd.DataFrame):
            digest.update(repr([(str(c), str(t)) for c, t in item.dtypes.items()]).encode())
            digest.update(pd.util.hash_pandas_object(item, index=True).to_numpy().tobytes())
        elif isinstance(item, np.ndarray):
            digest.update(f"{item.dtype}{item.shape}".encode())
            digest.update(np.ascontiguousarray(item).tobytes())
        elif isinstance(item, (list, tuple)):
            for element in item:
                feed(element)
        elif isinstance(item, dict):
            for key in sorted(item):
                digest.update(str(key).encode())
                feed(item[key])
        elif isinstance(item, str):
            digest.update(item.encode())
        else:
            digest.update(repr(item).encode())

    feed(value)
    return digest.hexdigest()[:32]
