SELECT
  "id",
  "email"
FROM (
  SELECT
    CAST(s."customer_id" AS VARCHAR) AS "id",
    s."email" AS "email",
    ROW_NUMBER() OVER (PARTITION BY s."customer_id" ORDER BY s."customer_id") AS _row_number
  FROM (
    SELECT
      customer_id,
      email
    FROM customers
    WHERE
      lifetime_value > 100
  ) AS s
  WHERE
    NOT s."customer_id" IS NULL
) AS _t
WHERE
  _row_number = 1
