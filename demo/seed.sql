-- Demo data for revseg: an online shop's customers, their web and app events, and orders.
--
-- revseg runs this script once, when demo.duckdb does not exist yet (targets.dev.seed in
-- revseg.yml), statement by statement in one transaction. Delete demo.duckdb to reseed.
--
-- * Fresh: every timestamp is an offset from the moment the seed runs (t0), with many
--   events in the last hours, so windowed segments (within: 24h, older_than: 30m) have
--   members on a fresh seed, and members start crossing window edges as time passes.
-- * Deterministic: rnd(key, salt) is an md5 of its arguments, not random(), so a seed
--   gives the same rows (relative to t0) on every machine and every DuckDB version.
-- * Fictional: emails use the reserved example.com/.org/.net and .example domains.
--
-- Tables: customers (5,000), events (~100k, last 30 days), orders (~15k, last 3 years),
-- products (24). Timestamps are TIMESTAMP (no zone) holding UTC, as revseg expects.

-- a uniform number in [0, 1) from a key and a salt
CREATE TEMP MACRO rnd(k, salt) AS
    CAST(('0x' || substr(md5(CAST(k AS VARCHAR) || ':' || salt), 1, 8)) AS BIGINT) / 4294967296.0;

-- one element of a list, picked by rnd
CREATE TEMP MACRO pick(xs, k, salt) AS xs[1 + CAST(floor(rnd(k, salt) * len(xs)) AS INTEGER)];

-- a standard normal number (Box-Muller), for order amounts
CREATE TEMP MACRO std_normal(k, salt) AS
    sqrt(-2 * ln(1 - rnd(k, salt || '/u'))) * cos(2 * pi() * rnd(k, salt || '/v'));

-- the seed's "now" as naive UTC; now() is the transaction's start, the same in every statement
CREATE TEMP MACRO t0() AS date_trunc('second', now() AT TIME ZONE 'UTC');

CREATE TEMP MACRO seconds_before_t0(s) AS t0() - to_seconds(CAST(s AS BIGINT));

-- the catalogue ---------------------------------------------------------------------------
CREATE TABLE products (
    product_id INTEGER PRIMARY KEY,
    product_name VARCHAR NOT NULL,
    category VARCHAR NOT NULL,
    price DECIMAL(10, 2) NOT NULL
);

INSERT INTO products VALUES
    (101, 'Trail Runner 2', 'shoes', 129.00),
    (102, 'City Sneaker', 'shoes', 89.00),
    (103, 'Merino Loafer', 'shoes', 149.00),
    (104, 'Summit Boot Pro', 'shoes', 219.00),
    (201, 'Storm Shell Jacket', 'outerwear', 249.00),
    (202, 'Down Parka', 'outerwear', 329.00),
    (203, 'Packable Windbreaker', 'outerwear', 79.00),
    (204, 'Wool Overcoat', 'outerwear', 289.00),
    (301, 'Leather Belt', 'accessories', 39.00),
    (302, 'Canvas Tote', 'accessories', 29.00),
    (303, 'Aviator Sunglasses', 'accessories', 119.00),
    (304, 'Cashmere Scarf', 'accessories', 95.00),
    (401, 'Aurora Buds', 'electronics', 99.00),
    (402, 'Aurora Buds Pro', 'electronics', 199.00),
    (403, 'Pulse Watch', 'electronics', 249.00),
    (404, 'Pulse Watch Pro', 'electronics', 399.00),
    (501, 'Linen Duvet Set', 'home', 139.00),
    (502, 'Stoneware Mug Set', 'home', 34.00),
    (503, 'Pour-Over Kettle', 'home', 59.00),
    (504, 'Wool Throw', 'home', 79.00),
    (601, 'Vitamin C Serum', 'beauty', 38.00),
    (602, 'Daily Moisturizer', 'beauty', 26.00),
    (603, 'Clay Mask', 'beauty', 22.00),
    (604, 'Hair Repair Oil', 'beauty', 31.00);

CREATE TEMP TABLE catalogue AS
SELECT *, CAST(row_number() OVER (PARTITION BY category ORDER BY product_id) - 1 AS INTEGER) AS idx
FROM products;

-- people: who the customers are, before any activity -------------------------------------
CREATE TEMP TABLE people AS
WITH base AS (
    SELECT
        i AS customer_id,
        pick(['Olivia', 'Liam', 'Emma', 'Noah', 'Amelia', 'Oliver', 'Ava', 'Elijah', 'Sophia', 'Lucas',
              'Mia', 'Mateo', 'Isabella', 'Levi', 'Charlotte', 'Leo', 'Harper', 'Ethan', 'Luna', 'James',
              'Chloe', 'Hugo', 'Lea', 'Felix', 'Emilia', 'Louis', 'Ines', 'Jack', 'Freya', 'Arthur',
              'Nora', 'Jonas', 'Sofia', 'Finn', 'Clara', 'Theo', 'Maya', 'Sam', 'Zoe', 'Ruby'],
             i, 'first') AS first_name,
        pick(['Smith', 'Johnson', 'Williams', 'Brown', 'Jones', 'Garcia', 'Miller', 'Davis', 'Martin',
              'Wilson', 'Taylor', 'Anderson', 'Thomas', 'Moore', 'Jackson', 'Walker', 'White', 'Harris',
              'Clark', 'Lewis', 'Muller', 'Schmidt', 'Schneider', 'Fischer', 'Weber', 'Dubois', 'Bernard',
              'Laurent', 'Petit', 'Evans', 'Roberts', 'Wright', 'Hughes', 'Green', 'Baker', 'Hall',
              'Young', 'King', 'Scott', 'Adams'],
             i, 'last') AS last_name,
        rnd(i, 'country') AS r_country,
        -- account age: up to 3 years, skewed towards recent sign-ups; at least one hour
        3600 + pow(rnd(i, 'age'), 1.5) * 1095 * 86400 AS age_s,
        rnd(i, 'engagement') AS engagement,
        rnd(i, 'buyer') AS buyer,
        -- a fifth of the customers older than four months have lapsed
        3600 + pow(rnd(i, 'age'), 1.5) * 1095 * 86400 > 120 * 86400 AND rnd(i, 'lapsed') < 0.20 AS lapsed
    FROM range(1, 5001) AS t(i)
), placed AS (
    SELECT
        *,
        CASE
            WHEN r_country < 0.38 THEN 'US'
            WHEN r_country < 0.52 THEN 'GB'
            WHEN r_country < 0.64 THEN 'DE'
            WHEN r_country < 0.74 THEN 'FR'
            WHEN r_country < 0.83 THEN 'CA'
            WHEN r_country < 0.91 THEN 'AU'
            WHEN r_country < 0.97 THEN 'NL'
            ELSE NULL  -- unknown: checkout never asked (exercises the NULL rule)
        END AS country
    FROM base
)
SELECT
    customer_id,
    first_name,
    last_name,
    country,
    CASE
        -- a few staff accounts, which segments exclude
        WHEN rnd(customer_id, 'staff') < 0.006
            THEN lower(first_name) || '.' || lower(last_name) || '@staff.shop.example'
        ELSE lower(first_name) || '.' || lower(last_name) || CAST(customer_id AS VARCHAR) || '@'
            || pick(['example.com', 'example.org', 'example.net'], customer_id, 'domain')
    END AS email,
    CASE
        WHEN rnd(customer_id, 'has_phone') < 0.18 THEN NULL
        WHEN country IN ('US', 'CA') OR country IS NULL THEN
            '+1' || CAST(201 + CAST(floor(rnd(customer_id, 'area') * 780) AS INTEGER) AS VARCHAR)
            || '555' || lpad(CAST(CAST(floor(rnd(customer_id, 'line') * 10000) AS INTEGER) AS VARCHAR), 4, '0')
        WHEN country = 'GB' THEN
            '+447700' || lpad(CAST(CAST(floor(rnd(customer_id, 'line') * 1000000) AS INTEGER) AS VARCHAR), 6, '0')
        WHEN country = 'DE' THEN
            '+49151' || lpad(CAST(CAST(floor(rnd(customer_id, 'line') * 100000000) AS INTEGER) AS VARCHAR), 8, '0')
        WHEN country = 'FR' THEN
            '+336' || lpad(CAST(CAST(floor(rnd(customer_id, 'line') * 100000000) AS INTEGER) AS VARCHAR), 8, '0')
        WHEN country = 'AU' THEN
            '+614' || lpad(CAST(CAST(floor(rnd(customer_id, 'line') * 100000000) AS INTEGER) AS VARCHAR), 8, '0')
        ELSE
            '+316' || lpad(CAST(CAST(floor(rnd(customer_id, 'line') * 100000000) AS INTEGER) AS VARCHAR), 8, '0')
    END AS phone,
    rnd(customer_id, 'opt_in') < 0.82 AS email_opt_in,
    seconds_before_t0(age_s) AS created_at,
    age_s,
    lapsed,
    -- lapsed customers used to order often, stopped 75 to 400 days ago and rarely visit:
    -- the win-back segment's population
    CASE WHEN lapsed THEN least(age_s - 86400, (75 + rnd(customer_id, 'lapsed_for') * 325) * 86400)
         ELSE 30 * 86400 END AS quiet_s,
    CASE WHEN lapsed THEN 0.35 * engagement ELSE engagement END AS engagement,
    buyer
FROM placed;

-- orders placed before the last 30 days (before the last 75+ days for lapsed customers) -------
CREATE TEMP TABLE past_orders AS
WITH counted AS (
    SELECT
        customer_id,
        age_s,
        quiet_s,
        -- a geometric-like count whose mean grows with the customer's propensity to buy
        least(25, CAST(floor(-ln(1 - rnd(customer_id, 'n_orders')) * CASE
            WHEN lapsed THEN 2 + 7 * buyer
            ELSE 0.7 + 4 * (0.25 * buyer + 0.75 * engagement)
        END) AS BIGINT)) AS n_orders
    FROM people
    WHERE age_s > 31 * 86400
)
SELECT
    c.customer_id,
    -- uniformly between sign-up and the end of the quiet period (30 days ago, or the lapse)
    seconds_before_t0(c.quiet_s + rnd(c.customer_id * 100 + o.j, 'past_at') * (c.age_s - c.quiet_s - 86400))
        AS ordered_at,
    CAST(round(exp(4.3 + 0.55 * std_normal(c.customer_id * 100 + o.j, 'amount')), 2) AS DECIMAL(10, 2)) AS amount,
    CASE
        WHEN rnd(c.customer_id * 100 + o.j, 'status') < 0.04 THEN 'cancelled'
        WHEN rnd(c.customer_id * 100 + o.j, 'status') < 0.10 THEN 'refunded'
        ELSE 'completed'
    END AS status,
    pick(['web', 'web', 'app', 'app', 'store'], c.customer_id * 100 + o.j, 'channel') AS channel
FROM counted AS c, range(c.n_orders) AS o(j);

-- browsing sessions of the last 30 days ----------------------------------------------------
CREATE TEMP TABLE sessions AS
WITH started AS (
    SELECT
        p.customer_id * 100 + s.j AS session_id,
        p.customer_id,
        -- skewed towards now: about a fifth of all sessions started in the last 24 hours
        seconds_before_t0(5 + least(30 * 86400.0, p.age_s) * pow(rnd(p.customer_id * 100 + s.j, 'started'), 2.2))
            AS started_at,
        p.engagement
    FROM people AS p, range(CAST(floor(19 * pow(p.engagement, 2.5)) AS BIGINT)) AS s(j)
)
SELECT
    session_id,
    customer_id,
    started_at,
    1 + CAST(floor(rnd(session_id, 'views') * 5) AS INTEGER) AS n_views,
    pick(['shoes', 'outerwear', 'accessories', 'electronics', 'home', 'beauty'], session_id, 'category')
        AS category,
    rnd(session_id, 'cart') < 0.30 AS carted,
    rnd(session_id, 'checkout') < 0.55 AS checked_out,
    rnd(session_id, 'order') < 0.75 AS ordered,
    pick(['web', 'web', 'app'], session_id, 'channel') AS channel
FROM started;

CREATE TEMP TABLE views AS
WITH picked AS (
    SELECT
        s.session_id,
        s.customer_id,
        v.j,
        s.n_views,
        s.started_at + to_seconds(CAST((v.j + 1) * 90 + floor(rnd(s.session_id * 10 + v.j, 'gap') * 60) AS BIGINT))
            AS ts,
        CASE
            WHEN rnd(s.session_id * 10 + v.j, 'stray') < 0.75 THEN s.category
            ELSE pick(['shoes', 'outerwear', 'accessories', 'electronics', 'home', 'beauty'],
                      s.session_id * 10 + v.j, 'stray_category')
        END AS category,
        CAST(floor(rnd(s.session_id * 10 + v.j, 'product') * 4) AS INTEGER) AS idx
    FROM sessions AS s, range(s.n_views) AS v(j)
)
SELECT p.*, c.product_id, c.product_name, c.price
FROM picked AS p
JOIN catalogue AS c ON c.category = p.category AND c.idx = p.idx;

-- the funnel after the last product view: cart, checkout, order
CREATE TEMP TABLE funnel AS
SELECT
    s.session_id,
    s.customer_id,
    s.channel,
    v.product_id,
    v.product_name,
    v.category,
    v.price,
    v.ts + to_seconds(CAST(20 + floor(rnd(s.session_id, 'cart_gap') * 60) AS BIGINT)) AS cart_at,
    CASE WHEN s.checked_out THEN
        v.ts + to_seconds(CAST(20 + floor(rnd(s.session_id, 'cart_gap') * 60)
                               + 60 + floor(rnd(s.session_id, 'checkout_gap') * 540) AS BIGINT))
    END AS checkout_at,
    CASE WHEN s.checked_out AND s.ordered THEN
        v.ts + to_seconds(CAST(20 + floor(rnd(s.session_id, 'cart_gap') * 60)
                               + 60 + floor(rnd(s.session_id, 'checkout_gap') * 540)
                               + 45 + floor(rnd(s.session_id, 'order_gap') * 240) AS BIGINT))
    END AS order_at,
    1 + CAST(floor(rnd(s.session_id, 'quantity') * 1.4) AS INTEGER) AS quantity
FROM sessions AS s
JOIN views AS v ON v.session_id = s.session_id AND v.j = s.n_views - 1
WHERE s.carted;

-- events ------------------------------------------------------------------------------------
CREATE TABLE events (
    event_id BIGINT PRIMARY KEY,
    customer_id INTEGER NOT NULL,
    event_name VARCHAR NOT NULL,
    ts TIMESTAMP,
    category VARCHAR,
    product_id INTEGER,
    product_name VARCHAR,
    price DECIMAL(10, 2),
    quantity INTEGER,
    channel VARCHAR,
    received_at TIMESTAMP
);

INSERT INTO events
WITH raw AS (
    SELECT customer_id, 'page_viewed' AS event_name, started_at AS ts,
           NULL AS category, NULL AS product_id, NULL AS product_name, NULL AS price, NULL AS quantity,
           channel, session_id * 10 AS k
    FROM sessions
    UNION ALL
    SELECT v.customer_id, 'product_viewed', v.ts, v.category, v.product_id, v.product_name, v.price, NULL,
           s.channel, v.session_id * 10 + v.j + 1
    FROM views AS v JOIN sessions AS s USING (session_id)
    UNION ALL
    SELECT customer_id, 'added_to_cart', cart_at, category, product_id, product_name, price, quantity,
           channel, session_id * 10 + 7
    FROM funnel
    UNION ALL
    SELECT customer_id, 'checkout_started', checkout_at, category, product_id, product_name, price, quantity,
           channel, session_id * 10 + 8
    FROM funnel WHERE checkout_at IS NOT NULL
    UNION ALL
    SELECT customer_id, 'order_completed', order_at, category, product_id, product_name, price, quantity,
           channel, session_id * 10 + 9
    FROM funnel WHERE order_at IS NOT NULL
)
SELECT
    row_number() OVER (ORDER BY ts, customer_id, k) AS event_id,
    customer_id,
    event_name,
    ts,
    category,
    product_id,
    product_name,
    price,
    quantity,
    channel,
    -- seconds of pipeline latency, and for 2% of events hours (a mobile app offline)
    least(t0(), ts + to_seconds(CAST(
        CASE WHEN rnd(k, 'late') < 0.02 THEN 3600 + floor(rnd(k, 'latency') * 18000)
             ELSE 1 + floor(rnd(k, 'latency') * 30) END AS BIGINT))) AS received_at
FROM raw
WHERE ts <= t0();  -- sessions that started minutes ago have not finished yet

-- orders --------------------------------------------------------------------------------------
CREATE TABLE orders (
    order_id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL,
    ordered_at TIMESTAMP NOT NULL,
    amount DECIMAL(10, 2) NOT NULL,
    status VARCHAR NOT NULL,
    channel VARCHAR NOT NULL
);

INSERT INTO orders
WITH everything AS (
    SELECT customer_id, ordered_at, amount, status, channel FROM past_orders
    UNION ALL
    SELECT customer_id, ts, CAST(price * quantity + CASE WHEN price * quantity < 50 THEN 4.95 ELSE 0 END
                                 AS DECIMAL(10, 2)),
           'completed', channel
    FROM events
    WHERE event_name = 'order_completed'
)
SELECT CAST(10000 + row_number() OVER (ORDER BY ordered_at, customer_id) AS INTEGER),
       customer_id, ordered_at, amount, status, channel
FROM everything;

-- customers -----------------------------------------------------------------------------------
CREATE TABLE customers (
    customer_id INTEGER PRIMARY KEY,
    email VARCHAR,
    phone VARCHAR,          -- E.164
    first_name VARCHAR,
    last_name VARCHAR,
    country VARCHAR,        -- ISO 3166-1 alpha-2; NULL when unknown
    email_opt_in BOOLEAN NOT NULL,
    lifetime_value DECIMAL(12, 2) NOT NULL,  -- completed orders, all time
    loyalty_points INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);

INSERT INTO customers
WITH spend AS (
    SELECT
        customer_id,
        sum(amount) FILTER (WHERE status = 'completed') AS ltv,
        count(*) FILTER (WHERE status = 'completed') AS completed,
        max(ordered_at) AS last_order_at
    FROM orders
    GROUP BY customer_id
)
SELECT
    p.customer_id,
    p.email,
    p.phone,
    p.first_name,
    p.last_name,
    p.country,
    p.email_opt_in,
    CAST(coalesce(s.ltv, 0) AS DECIMAL(12, 2)),
    -- 1 point per unit spent, 25 per completed order, 100 for signing up
    CAST(floor(coalesce(s.ltv, 0)) + 25 * coalesce(s.completed, 0) + 100 AS INTEGER),
    p.created_at,
    greatest(p.created_at, coalesce(s.last_order_at, p.created_at))
FROM people AS p
LEFT JOIN spend AS s USING (customer_id)
ORDER BY p.customer_id;
