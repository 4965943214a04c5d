WITH agg3 AS (
  SELECT
    ev1."customer_id" AS k,
    COUNT(*) AS v
  FROM events AS ev1
  WHERE
    ev1."event_name" = 'product_viewed'
    AND ev1."ts" <= CAST('2026-11-28 12:00:00' AS TIMESTAMP)
    AND ev1."ts" > CAST('2026-11-21 12:00:00' AS TIMESTAMP)
    AND EXISTS(
      SELECT
        1
      FROM events AS f2
      WHERE
        f2."customer_id" = ev1."customer_id"
        AND f2."event_name" = 'added_to_cart'
        AND f2."ts" > ev1."ts"
        AND f2."ts" <= CAST('2026-11-28 12:00:00' AS TIMESTAMP)
        AND f2."ts" > CAST('2026-11-21 12:00:00' AS TIMESTAMP)
    )
  GROUP BY
    ev1."customer_id"
)
SELECT DISTINCT ON (e."customer_id")
  CAST(e."customer_id" AS TEXT) AS "id"
FROM customers AS e
LEFT JOIN agg3
  ON agg3.k = e."customer_id"
WHERE
  NOT e."customer_id" IS NULL AND COALESCE((
    COALESCE(agg3."v", 0) >= 3
  ), FALSE)
