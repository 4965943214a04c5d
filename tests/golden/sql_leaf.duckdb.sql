SELECT DISTINCT ON (e."customer_id")
  CAST(e."customer_id" AS TEXT) AS "id"
FROM customers AS e
WHERE
  NOT e."customer_id" IS NULL
  AND COALESCE((
    LOWER(e."country") = 'us' OR e."lifetime_value" * 2 > 1000
  ), FALSE)
