SELECT
  "id"
FROM (
  SELECT
    CAST(e."customer_id" AS VARCHAR) AS "id",
    ROW_NUMBER() OVER (PARTITION BY e."customer_id" ORDER BY e."customer_id") AS _row_number
  FROM customers AS e
  WHERE
    NOT e."customer_id" IS NULL
    AND COALESCE((
      LOWER(e."country") = 'us' OR e."lifetime_value" * 2 > 1000
    ), FALSE)
) AS _t
WHERE
  _row_number = 1
