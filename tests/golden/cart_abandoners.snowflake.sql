SELECT
  "id",
  "email"
FROM (
  WITH agg4 AS (
    SELECT
      a3."customer_id" AS k,
      SUM(a3."amount") AS v
    FROM orders AS a3
    WHERE
      a3."ordered_at" <= CAST('2026-11-28 12:00:00' AS TIMESTAMP)
      AND a3."ordered_at" > CAST('2026-10-29 12:00:00' AS TIMESTAMP)
    GROUP BY
      a3."customer_id"
  ), agg6 AS (
    SELECT
      a5."customer_id" AS k,
      COUNT(DISTINCT a5."status") AS v
    FROM orders AS a5
    WHERE
      a5."ordered_at" <= CAST('2026-11-28 12:00:00' AS TIMESTAMP)
    GROUP BY
      a5."customer_id"
  ), agg8 AS (
    SELECT
      a7."customer_id" AS k,
      AVG(a7."amount") AS v
    FROM orders AS a7
    WHERE
      a7."ordered_at" <= CAST('2026-11-28 12:00:00' AS TIMESTAMP)
      AND COALESCE((
        a7."status" = 'paid'
      ), FALSE)
    GROUP BY
      a7."customer_id"
  ), agg10 AS (
    SELECT
      a9."customer_id" AS k,
      MAX(a9."ordered_at") AS v
    FROM orders AS a9
    WHERE
      a9."ordered_at" <= CAST('2026-11-28 12:00:00' AS TIMESTAMP)
    GROUP BY
      a9."customer_id"
  ), agg12 AS (
    SELECT
      a11."customer_id" AS k,
      COUNT(*) AS v
    FROM events AS a11
    WHERE
      a11."ts" <= CAST('2026-11-27 12:00:00' AS TIMESTAMP)
    GROUP BY
      a11."customer_id"
  )
  SELECT
    CAST(e."customer_id" AS VARCHAR) AS "id",
    e."email" AS "email",
    ROW_NUMBER() OVER (PARTITION BY e."customer_id" ORDER BY e."customer_id") AS _row_number
  FROM customers AS e
  LEFT JOIN agg4
    ON agg4.k = e."customer_id"
  LEFT JOIN agg6
    ON agg6.k = e."customer_id"
  LEFT JOIN agg8
    ON agg8.k = e."customer_id"
  LEFT JOIN agg10
    ON agg10.k = e."customer_id"
  LEFT JOIN agg12
    ON agg12.k = e."customer_id"
  WHERE
    NOT e."customer_id" IS NULL
    AND (
      EXISTS(
        SELECT
          1
        FROM events AS ev1
        WHERE
          ev1."customer_id" = e."customer_id"
          AND ev1."event_name" = 'added_to_cart'
          AND ev1."ts" <= CAST('2026-11-28 11:30:00' AS TIMESTAMP)
          AND ev1."ts" > CAST('2026-11-27 12:00:00' AS TIMESTAMP)
          AND COALESCE((
            ev1."category" = 'shoes'
          ), FALSE)
          AND (
            COALESCE((
              ev1."amount" > 50
            ), FALSE) OR NOT (
              ev1."amount" IS NULL
            )
          )
          AND NOT EXISTS(
            SELECT
              1
            FROM events AS f2
            WHERE
              f2."customer_id" = ev1."customer_id"
              AND f2."event_name" = 'order_completed'
              AND f2."ts" > ev1."ts"
              AND f2."ts" <= CAST('2026-11-28 12:00:00' AS TIMESTAMP)
              AND f2."ts" > CAST('2026-11-27 12:00:00' AS TIMESTAMP)
              AND f2."ts" <= TIMESTAMPADD(SECOND, 7200, ev1."ts")
          )
      )
      AND NOT (
        (
          COALESCE((
            COALESCE(agg4."v", 0) > 500
          ), FALSE)
          OR COALESCE((
            COALESCE(agg6."v", 0) BETWEEN 2 AND 3
          ), FALSE)
          OR COALESCE((
            agg8."v" >= 100
          ), FALSE)
          OR COALESCE((
            agg10."v" < CAST('2026-09-29 12:00:00' AS TIMESTAMP)
          ), FALSE)
          OR COALESCE((
            COALESCE(agg12."v", 0) = 0
          ), FALSE)
        )
      )
    )
) AS _t
WHERE
  _row_number = 1
