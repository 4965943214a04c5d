WITH agg2 AS (
  SELECT
    a1."customer_id" AS k,
    SUM(a1."amount") AS v
  FROM orders AS a1
  WHERE
    a1."ordered_at" <= CAST('2026-11-28 12:00:00' AS TIMESTAMP)
    AND a1."ordered_at" > CAST('2026-10-29 12:00:00' AS TIMESTAMP)
  GROUP BY
    a1."customer_id"
), agg4 AS (
  SELECT
    a3."customer_id" AS k,
    COUNT(DISTINCT a3."status") AS v
  FROM orders AS a3
  WHERE
    a3."ordered_at" <= CAST('2026-11-28 12:00:00' AS TIMESTAMP)
  GROUP BY
    a3."customer_id"
), agg6 AS (
  SELECT
    a5."customer_id" AS k,
    AVG(a5."amount") AS v
  FROM orders AS a5
  WHERE
    a5."ordered_at" <= CAST('2026-11-28 12:00:00' AS TIMESTAMP)
    AND COALESCE((
      a5."status" = 'paid'
    ), FALSE)
  GROUP BY
    a5."customer_id"
), agg8 AS (
  SELECT
    a7."customer_id" AS k,
    MAX(a7."ordered_at") AS v
  FROM orders AS a7
  WHERE
    a7."ordered_at" <= CAST('2026-11-28 12:00:00' AS TIMESTAMP)
  GROUP BY
    a7."customer_id"
), agg10 AS (
  SELECT
    a9."customer_id" AS k,
    COUNT(*) AS v
  FROM events AS a9
  WHERE
    a9."ts" <= CAST('2026-11-27 12:00:00' AS TIMESTAMP)
  GROUP BY
    a9."customer_id"
)
SELECT DISTINCT ON (e."customer_id")
  CAST(e."customer_id" AS TEXT) AS "id"
FROM customers AS e
LEFT JOIN agg2
  ON agg2.k = e."customer_id"
LEFT JOIN agg4
  ON agg4.k = e."customer_id"
LEFT JOIN agg6
  ON agg6.k = e."customer_id"
LEFT JOIN agg8
  ON agg8.k = e."customer_id"
LEFT JOIN agg10
  ON agg10.k = e."customer_id"
WHERE
  NOT e."customer_id" IS NULL
  AND (
    COALESCE((
      COALESCE(agg2."v", 0) > 500
    ), FALSE)
    OR COALESCE((
      COALESCE(agg4."v", 0) BETWEEN 2 AND 3
    ), FALSE)
    OR COALESCE((
      agg6."v" >= 100
    ), FALSE)
    OR COALESCE((
      agg8."v" < CAST('2026-09-29 12:00:00' AS TIMESTAMP)
    ), FALSE)
    OR COALESCE((
      COALESCE(agg10."v", 0) = 0
    ), FALSE)
  )
